"""Lambda's API errors as the AWS rest-json protocol carries them: the code in the
`x-amzn-ErrorType` header, the request ID in `x-amzn-RequestId`, a JSON body with `Type`
and the message (esm-reference.md 14)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.codec import JSONDecodeError, dumps, loads

# Lambda's model names the message `Message` in these shapes, `message` in the others.
_CAPITAL_MESSAGE = frozenset({"ResourceNotFoundException", "ServiceException"})


class ApiError(Exception):
    """An error the API answers with, in AWS's shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_after = retry_after

    def response(self, request_id: str) -> web.Response:
        body: dict[str, str] = {
            "Type": "Service" if self.status >= 500 else "User",
            ("Message" if self.code in _CAPITAL_MESSAGE else "message"): self.message,
        }
        if self.reason is not None:
            body["Reason"] = self.reason
        headers = {"x-amzn-ErrorType": self.code, "x-amzn-RequestId": request_id}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return web.Response(
            body=dumps(body), status=self.status, headers=headers, content_type="application/json"
        )


def not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message)


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "InvalidParameterValueException", message)


def invalid_signature(message: str) -> ApiError:
    return ApiError(403, "InvalidSignatureException", message)


def unrecognized_client() -> ApiError:
    return ApiError(
        403, "UnrecognizedClientException", "The security token included in the request is invalid."
    )


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (none at all: {}); 400
    InvalidRequestContentException otherwise."""
    try:
        document = loads(body) if body.strip() else {}
    except (JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
        ) from None
    if not isinstance(document, dict):
        raise ApiError(400, "InvalidRequestContentException", "The request body must be an object")
    return document
