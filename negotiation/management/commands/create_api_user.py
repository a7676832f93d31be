"""`manage.py create_api_user <username> [--staff] [--password ...] [--rotate]`: a user and its API token.

Creates the user, or reuses it if it exists, and prints only the token key on stdout, so that
`TOKEN=$(python manage.py create_api_user alice)` works in a shell. Staff see every user's objects.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create (or reuse) a user and print its REST API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="Let the user see every user's objects.")
        parser.add_argument("--password", default=None, help="Also set a password (for the admin and the docs).")
        parser.add_argument("--email", default="")
        parser.add_argument("--rotate", action="store_true", help="Replace the user's token with a new one.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()  # noqa: N806
        user, created = User.objects.get_or_create(username=options["username"],
                                                   defaults={"email": options["email"]})
        changed = []
        if options["staff"] and not user.is_staff:
            user.is_staff = True
            changed.append("is_staff")
        if options["password"]:
            user.set_password(options["password"])
            changed.append("password")
        elif created:
            user.set_unusable_password()
            changed.append("password")
        if changed:
            user.save()
        if options["rotate"]:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stderr.write(f"{'created' if created else 'reusing'} user {user.username}"
                          f"{' (staff)' if user.is_staff else ''}")
        self.stdout.write(token.key)
