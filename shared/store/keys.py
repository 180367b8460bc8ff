"""Table keys: deterministic, injective, and legal in Azure Table Storage.

Keys forbid `/ \\ # ?` and control characters and may be at most 1 KiB, yet user names such as
`CONTOSO\\alice` or `h#x?r` must stay distinct. We percent-encode instead of dropping, so no
two users share a key, and cut very long values with a hash suffix. Pure code.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date, timedelta
from functools import lru_cache

#: Longest encoded subject kept verbatim (200 chars stays under 1 KiB even in UTF-16 surrogate
#: pairs); longer ones are cut and suffixed with a hash, which
#: makes them exactly MAX_SUBJECT + 17 characters long, so they cannot collide with short ones.
MAX_SUBJECT = 200
_FORBIDDEN = frozenset("/\\#?%|'") | frozenset(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))


#: Caches here and in `model` keep only short values: one log record can carry 32 KiB strings,
#: and 65,536 of them would stay in the worker for its life. Longer values are computed anew.
CACHE_KEY_CHARS = 128


def _encode(value: str) -> str:
    if not _FORBIDDEN.isdisjoint(value):
        value = "".join(f"%{ord(c):02X}" if c in _FORBIDDEN else c for c in value)
    if len(value) > MAX_SUBJECT:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        value = f"{value[:MAX_SUBJECT]}~{digest}"
    return value


#: At most 8,192 keys of at most 128 characters (values of at most 384): a few MB at worst.
_encode_short = lru_cache(maxsize=8192)(_encode)


def encode(value: str) -> str:
    """Percent-encode the characters Table keys forbid (plus `%`, our `|` separator and `'`)."""
    return _encode_short(value) if len(value) <= CACHE_KEY_CHARS else _encode(value)


#: The account of a record with neither a user name nor an e-mail (Bastion writes a blank
#: `userName` for Entra ID sign-ins through the native client). `identity` folds every ASCII
#: letter to lower case, so no name or e-mail can produce this key; people see `NO_IDENTITY_LABEL`.
NO_IDENTITY = "(NO IDENTITY)"
NO_IDENTITY_LABEL = "(no identity)"


def user_key(user_name: str, user_email: str) -> str:
    """Who a record is about: the name, else the e-mail, else `NO_IDENTITY` (see `identity`)."""
    return identity(user_name) or identity(user_email) or NO_IDENTITY


def identified(user: str) -> bool:
    """Is this account a person's? Not for `NO_IDENTITY` (nor '', the key before it existed):
    per-account rules and baselines skip those; per-address rules still count them."""
    return bool(user) and user != NO_IDENTITY


def shown(user_name: str, user: str) -> str:
    """How people see a record's account: the verbatim name, else the key, `(no identity)`."""
    return (user_name or user) if identified(user) else NO_IDENTITY_LABEL


def identity(name: str) -> str:
    """The form of a user name (or e-mail) that users are compared by.

    Format characters (Unicode category Cf: zero-width space and joiners, word joiner, BOM,
    bidi controls, soft hyphen) are removed, the text is put in NFC and surrounding whitespace
    is stripped; then case is folded one character at a time, the way Windows compares account
    names (RtlUpcaseUnicodeString's simple upper-case table), not with Unicode case folding,
    which would merge `Straße` with `STRASSE`, `ﬁ` with `fi` and the Kelvin sign with `k`.
    The verbatim name stays in `UserName`.
    """
    if name.isascii():  # nearly every name: NFC and the format characters are not ASCII
        return name.strip().lower()
    text = "".join(c for c in name if unicodedata.category(c) != "Cf")
    return "".join(map(_fold, unicodedata.normalize("NFC", text).strip()))


def aliases(user_name: str, user_email: str, account: str) -> list[str]:
    """What else a person may type for the account a record is stored under: the e-mail the
    record carries, the bare name of `DOMAIN\\name`, and the local part of an e-mail (of the
    e-mail, or of a UPN-shaped name); each in the identity form, never the account itself."""
    name, email = identity(user_name), identity(user_email)
    found = [email]
    if "\\" in name:
        found.append(name.rsplit("\\", 1)[1].strip())
    found += [part.rsplit("@", 1)[0].strip() for part in (name, email) if "@" in part]
    return sorted({term for term in found if term and term != account})


def alias_via(term: str, account: str) -> str:
    """Why `term` reaches `account`, from the two alone (so stored rows need no more): the
    account's e-mail, the bare name of its `DOMAIN\\name`, or the local part of an e-mail."""
    if "@" in term:
        return "e-mail"
    if "\\" in account and account.rsplit("\\", 1)[1].strip() == term:
        return "name"
    return "local part"


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """Simple case folding of one character: its upper case when that is one character (else
    the character itself), then the lower case of that when it maps back to it. Two names fold
    alike exactly when their per-character upper cases are equal: `K`, `k` -> `k`; the Kelvin
    sign, `ß`, `ẞ`, `ﬁ` and `İ` stay themselves."""
    upper = char.upper()
    if len(upper) != 1:
        upper = char
    lower = upper.lower()
    return lower if len(lower) == 1 and lower.upper() == upper else upper


def hour_of(stamp: str) -> str:
    """UTC hour bucket `yyyy-MM-ddTHH` of an ISO 8601 UTC timestamp (sorts as text)."""
    return stamp[:13]


def partition_key(subject: str, hour: str) -> str:
    """`<encoded subject>|<hour>`: one partition per subject and UTC hour."""
    return f"{encode(subject)}|{hour}"


def hour_range(subject: str, first_hour: str, last_hour: str) -> tuple[str, str]:
    """PartitionKey bounds [low, high) that cover `subject`'s hours first..last inclusive."""
    prefix = encode(subject) + "|"
    return prefix + first_hour, prefix + last_hour + "~"


def subject_prefix(subject: str) -> str:
    """RowKey prefix of a subject's rows in a shared partition (`|` cannot occur encoded)."""
    return encode(subject) + "|"


def days(first: str, last: str) -> list[str]:
    """The `yyyy-MM-dd` days from `first` to `last` inclusive (ISO timestamps or days)."""
    day, end = date.fromisoformat(first[:10]), date.fromisoformat(last[:10])
    out = []
    while day <= end:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def row_key(stamp: str, digest: str) -> str:
    """Sorts by event time inside a partition; the digest makes it unique per record."""
    return f"{stamp[:26]}Z-{digest}"


def blob_key(container: str, name: str) -> str:
    """A fixed-length RowKey for a blob path (paths contain `/`, which keys forbid)."""
    return hashlib.sha256(f"{container}/{name}".encode()).hexdigest()
