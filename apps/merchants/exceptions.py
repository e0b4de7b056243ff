from apps.core.errors import AuthenticationError, InvalidRequest


class ApiKeyMissing(AuthenticationError):
    default_code = "api_key_missing"


class ApiKeyInvalid(AuthenticationError):
    default_code = "api_key_invalid"


class SignatureInvalid(AuthenticationError):
    default_code = "signature_invalid"


class SignatureTimestampInvalid(AuthenticationError):
    default_code = "signature_timestamp_invalid"


class SignatureReplayed(AuthenticationError):
    default_code = "signature_replayed"


class MerchantKeyInvalid(InvalidRequest):
    default_code = "public_key_invalid"
