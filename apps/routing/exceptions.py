from apps.core.errors import InvalidRequest


class CardInvalid(InvalidRequest):
    default_code = "card_invalid"
