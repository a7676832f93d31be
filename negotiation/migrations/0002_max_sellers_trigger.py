"""A session has at most 10 sellers, enforced in Postgres (a CHECK cannot count rows).

The trigger locks the session row first, so two concurrent inserts cannot both see 9.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION mams_session_max_sellers() RETURNS trigger AS $$
BEGIN
  PERFORM 1 FROM negotiation_session WHERE id = NEW.session_id FOR UPDATE;
  IF (SELECT count(*) FROM negotiation_seller WHERE session_id = NEW.session_id AND id <> NEW.id) >= 10 THEN
    RAISE EXCEPTION 'session_max_10_sellers: a session has at most 10 sellers'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'session_max_10_sellers';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER session_max_10_sellers BEFORE INSERT OR UPDATE OF session_id ON negotiation_seller
  FOR EACH ROW EXECUTE FUNCTION mams_session_max_sellers();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS session_max_10_sellers ON negotiation_seller;
DROP FUNCTION IF EXISTS mams_session_max_sellers();
"""


class Migration(migrations.Migration):
    dependencies = [("negotiation", "0001_initial")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
