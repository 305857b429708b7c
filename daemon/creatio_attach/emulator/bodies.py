"""Creatio's three error body shapes as starlette responses (contract sections 0 J and 5.5).

One job: build the OData error envelope, the ASP.NET Web API exception body and the
routing-miss body, so every emulator module answers errors the way Creatio does.
Must not import anything from the rest of ``creatio_attach``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


def odata_error(status: int, message: str, code: str = "") -> JSONResponse:
    """OData envelope: ``{"error":{"code","message","innererror":{...}}}``."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innererror": {
                "message": message,
                "type": "",
                "stacktrace": "",
            },
        }
    }
    return JSONResponse(body, status_code=status)


def aspnet_error(
    status: int,
    exception_message: str,
    exception_type: str = "System.InvalidOperationException",
) -> JSONResponse:
    """ASP.NET Web API exception body (``"Message": "An error has occurred."``)."""
    body = {
        "Message": "An error has occurred.",
        "ExceptionMessage": exception_message,
        "ExceptionType": exception_type,
        "StackTrace": None,
    }
    return JSONResponse(body, status_code=status)


def routing_miss(request_uri: str, controller: str) -> JSONResponse:
    """404 for an unknown entity set or service."""
    body = {
        "Message": f"No HTTP resource was found that matches the request URI '{request_uri}'.",
        "MessageDetail": f"No type was found that matches the controller named '{controller}'.",
    }
    return JSONResponse(body, status_code=404)
