"""Validation of contact data, shared by the JSON and the CSV routes.

Each check returns ``(normalised value, None)`` or ``(None, problem)``; problems never repeat
the offending value (it is personal data, and would end up in logs and responses).

* phone numbers go through ``phonenumbers`` with FR as the default region, so that national
  French input ("06 12 34 56 78") is accepted, and come out in E.164; a ``mobile`` must be a
  number that can receive SMS;
* e-mail addresses are checked for syntax (ASCII local part, IDNA domain with a dotted name);
* languages are ISO 639-1 codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

from replication.store_api import ContactIn

DEFAULT_REGION = "FR"
MAX_NAME = 200
MAX_GROUP = 100
MAX_GROUPS = 50

# ISO 639-1
_ISO_639_1 = """
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da
de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz
ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln
lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi
pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti
tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
"""
LANGUAGES = frozenset(_ISO_639_1.split())

_PARSE_PROBLEMS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_SMS_TYPES = frozenset({
    PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.PAGER,
})
# French numbers written plainly: +33 6 12 34 56 78, 0033612345678, 06.12.34.56.78
_SEPARATORS = re.compile(r"[ .\-\u00a0]")
_FRENCH = re.compile(r"(?:\+33|0033|0)([1-9]\d{8})\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")

Checked = tuple[str | None, str | None]


@lru_cache(maxsize=65536)
def _parse_phone(value: str) -> tuple[str | None, bool, str | None]:
    """(E.164, can receive SMS, problem)."""
    if len(value) > 40:
        return None, False, "too long"
    french = _FRENCH.match(_SEPARATORS.sub("", value))
    if french is not None:
        # The common case, without phonenumbers' generic parser (3/4 of the cost); the
        # number is still validated against its metadata below.
        number = PhoneNumber(country_code=33, national_number=int(french.group(1)))
    else:
        try:
            number = phonenumbers.parse(value, DEFAULT_REGION)
        except NumberParseException as e:
            return None, False, _PARSE_PROBLEMS.get(e.error_type, "not a phone number")
    # number_type() runs the same per-type pattern matching as is_valid_number() (UNKNOWN for
    # an invalid number): calling it alone halves the cost of a 100,000-row import.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        if not phonenumbers.is_possible_number(number):
            return None, False, "not a possible phone number (wrong length)"
        return None, False, "not a valid phone number"
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return e164, kind in _SMS_TYPES, None


def check_phone(value: str, *, mobile: bool = False) -> Checked:
    e164, sms, problem = _parse_phone(value.strip())
    if problem is not None:
        return None, problem
    if mobile and not sms:
        return None, "not a mobile number (cannot receive SMS)"
    return e164, None


def check_email(value: str) -> Checked:
    value = value.strip()
    if len(value) > 254:
        return None, "longer than 254 characters"
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None, "not an e-mail address (no local part@domain)"
    if len(local) > 64 or not _LOCAL.match(local):
        return None, "invalid local part before '@'"
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None, "invalid domain"
    labels = ascii_domain.rstrip(".").split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None, "invalid domain"
    if labels[-1].isdigit():
        return None, "invalid domain"
    return f"{local}@{domain.lower()}", None


def check_language(value: str) -> Checked:
    code = value.strip().lower()
    if code not in LANGUAGES:
        return None, "not an ISO 639-1 language code (such as fr, en, de)"
    return code, None


def check_name(value: str, max_len: int = MAX_NAME) -> Checked:
    value = value.strip()
    if not value:
        return None, "required"
    if len(value) > max_len:
        return None, f"longer than {max_len} characters"
    if _CONTROL.search(value):
        return None, "contains control characters"
    return value, None


def check_group(value: str) -> Checked:
    name, problem = check_name(value, MAX_GROUP)
    if problem is not None:
        return None, problem
    if name is not None and ";" in name:
        return None, "contains ';'"
    return name, None


@dataclass(frozen=True)
class RawContact:
    """Contact fields as received, strings or None, before validation."""

    name: str | None
    phone: str | None = None
    mobile: str | None = None
    email: str | None = None
    language: str | None = None
    groups: tuple[str, ...] = ()
    external_id: str | None = None


def check_contact(raw: RawContact) -> tuple[ContactIn | None, list[tuple[str, str]]]:
    """The validated contact, or every ``(field, problem)`` found (all of them, not the first)."""
    problems: list[tuple[str, str]] = []

    def take(field: str, checked: Checked) -> str | None:
        value, problem = checked
        if problem is not None:
            problems.append((field, problem))
        return value

    name = take("name", check_name(raw.name or ""))
    phone = take("phone", check_phone(raw.phone)) if raw.phone and raw.phone.strip() else None
    mobile = (take("mobile", check_phone(raw.mobile, mobile=True))
              if raw.mobile and raw.mobile.strip() else None)
    email = take("email", check_email(raw.email)) if raw.email and raw.email.strip() else None
    language = "fr"
    if raw.language is not None and raw.language.strip():
        language = take("language", check_language(raw.language)) or "fr"
    groups: list[str] = []
    if len(raw.groups) > MAX_GROUPS:
        problems.append(("groups", f"more than {MAX_GROUPS} groups"))
    for i, group in enumerate(raw.groups):
        checked = take(f"groups[{i}]", check_group(group))
        if checked is not None and checked not in groups:
            groups.append(checked)
    external_id = raw.external_id.strip() if raw.external_id else None
    if external_id is not None and len(external_id) > 100:
        problems.append(("external_id", "longer than 100 characters"))
    if not any(p and p.strip() for p in (raw.phone, raw.mobile, raw.email)):
        problems.append(("phone", "a contact needs a phone, a mobile or an e-mail address"))
    if problems or name is None:
        return None, problems
    return ContactIn(
        name=name, phone=phone, mobile=mobile, email=email, language=language,
        groups=tuple(groups), external_id=external_id or None,
    ), problems
