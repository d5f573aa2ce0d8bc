"""Input of the plan API: a serializer's validated data, or a 400 that says in one
sentence what is wrong (with the field errors beside it)."""

from rest_framework.exceptions import ValidationError


def _flatten(errors, prefix="") -> list[str]:
    if isinstance(errors, dict):
        out = []
        for key, value in errors.items():
            label = "" if key in ("non_field_errors", "detail") else f"{prefix}{key}"
            out += _flatten(value, f"{label}." if label else "")
        return out
    if isinstance(errors, list):
        out = []
        for value in errors:
            out += _flatten(value, prefix)
        return out
    return [f"{prefix[:-1]}: {errors}" if prefix else str(errors)]


def validated(serializer_class, data, *, partial=False) -> dict:
    """Validated input, or a 400 whose `detail` says what is wrong in one sentence."""
    serializer = serializer_class(data=data, partial=partial)
    if not serializer.is_valid():
        raise ValidationError(
            {"detail": "; ".join(_flatten(serializer.errors)), **serializer.errors}
        )
    return serializer.validated_data
