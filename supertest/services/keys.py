"""Key rotation: every encrypted value rewritten with the newest key (encryption.py)."""
from __future__ import annotations

from sqlalchemy import Text, column, select, table, update

from supertest import encryption
from supertest.extensions import db

# (table, key column, encrypted columns): plain SQL, so each value is handled as the stored token.
ENCRYPTED = (("variables", "id", ("value",)), ("channels", "id", ("target", "secret")))


def rotate_all() -> int:
    """Re-encrypt every stored secret with the newest key, in one transaction; the number rewritten.
    Raises encryption.InvalidToken (and changes nothing) if a value was made with no key in use."""
    rewritten = 0
    for name, key, columns in ENCRYPTED:
        rows = table(name, column(key, Text), *(column(c, Text) for c in columns))
        for row in db.session.execute(select(rows)).all():
            values = {c: encryption.rotate(getattr(row, c)) for c in columns if getattr(row, c) is not None}
            if values:
                db.session.execute(update(rows).where(rows.c[key] == getattr(row, key)).values(**values))
                rewritten += len(values)
    db.session.commit()
    return rewritten
