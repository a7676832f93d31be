"""Item names and handles get a stored comparison key (engine/names.py: NFC + Unicode case folding),
and the unique constraints move from Postgres `lower(...)` to that key, so Python's checks and the
database agree on what "the same name" is. Handles may use letters and digits of any script.

The data step writes every existing row's name in NFC and its key. Two rows that were distinct under
`lower()` but are the same name under the key ('Straße' and 'STRASSE' for one seller) cannot both
stay: the migration stops and lists them, so a person decides which to rename; nothing is dropped.
"""

from django.db import migrations, models

import negotiation.models


def fill_keys(apps, schema_editor):
    from negotiation.engine.names import clean_name, name_key

    clashes = []
    for model_name, name_field, key_field, scope in (("BuyerDemand", "item_name", "item_key", "session_id"),
                                                      ("InventoryItem", "item_name", "item_key", "seller_id"),
                                                      ("Seller", "handle", "handle_key", "session_id")):
        model = apps.get_model("negotiation", model_name)
        seen = {}
        for row in model.objects.order_by(scope, "pk").iterator():
            name = clean_name(getattr(row, name_field))
            key = (getattr(row, scope), name_key(name))
            if key in seen:
                clashes.append(f"{model_name} {row.pk} ({name!r}) and {seen[key]} in {scope} {key[0]}")
                continue
            seen[key] = f"{row.pk} ({name!r})"
            model.objects.filter(pk=row.pk).update(**{name_field: name, key_field: key[1]})
    if clashes:
        raise RuntimeError("These rows name the same item or handle once case and Unicode form are ignored; "
                           "rename one of each pair and migrate again: " + "; ".join(clashes))


class Migration(migrations.Migration):

    dependencies = [
        ('negotiation', '0008_session_frozen_by'),
    ]

    operations = [
        migrations.AddField(
            model_name='buyerdemand',
            name='item_key',
            field=models.CharField(default='', editable=False, help_text="The name's comparison key (NFC, Unicode case folding; engine/names.py), set on every save.", max_length=765),
        ),
        migrations.AddField(
            model_name='inventoryitem',
            name='item_key',
            field=models.CharField(default='', editable=False, help_text="The name's comparison key (NFC, Unicode case folding; engine/names.py), set on every save.", max_length=765),
        ),
        migrations.AddField(
            model_name='seller',
            name='handle_key',
            field=models.CharField(default='', editable=False, help_text="The name's comparison key (NFC, Unicode case folding; engine/names.py), set on every save.", max_length=765),
        ),
        migrations.AlterField(
            model_name='seller',
            name='handle',
            field=models.CharField(help_text='A handle is @ followed by 1–50 letters (any script, accents included), digits or underscores, with no spaces, punctuation or symbols, e.g. @QuickTech, @Ohrwurm_Köln or @東京電機.', max_length=51, validators=[negotiation.models.validate_handle]),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='buyerdemand',
            name='demand_item_unique_per_session',
        ),
        migrations.RemoveConstraint(
            model_name='inventoryitem',
            name='inventory_item_unique_per_seller',
        ),
        migrations.RemoveConstraint(
            model_name='seller',
            name='seller_handle_format',
        ),
        migrations.RemoveConstraint(
            model_name='seller',
            name='seller_handle_unique_per_session',
        ),
        migrations.AddConstraint(
            model_name='buyerdemand',
            constraint=models.UniqueConstraint(fields=('session', 'item_key'), name='demand_item_unique_per_session', violation_error_message='The buyer already has a demand for this item (item names are compared ignoring case).'),
        ),
        migrations.AddConstraint(
            model_name='inventoryitem',
            constraint=models.UniqueConstraint(fields=('seller', 'item_key'), name='inventory_item_unique_per_seller', violation_error_message='This seller already stocks this item (item names are compared ignoring case).'),
        ),
        migrations.AddConstraint(
            model_name='seller',
            constraint=models.CheckConstraint(condition=models.Q(('handle__regex', '^@([0-9A-Za-z_]|[^\\x01-\\x7f]){1,50}$')), name='seller_handle_format', violation_error_message='A handle is @ followed by 1–50 letters (any script, accents included), digits or underscores, with no spaces, punctuation or symbols, e.g. @QuickTech, @Ohrwurm_Köln or @東京電機.'),
        ),
        migrations.AddConstraint(
            model_name='seller',
            constraint=models.UniqueConstraint(fields=('session', 'handle_key'), name='seller_handle_unique_per_session', violation_error_message='Another seller in this session already uses this handle (handles are compared ignoring case).'),
        ),
    ]
