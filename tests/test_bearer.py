"""The one parser of `Authorization: Bearer <token>`, optional (the feed's upgrade) or required (the API)."""

from __future__ import annotations

import pytest

from common.app.problems import Unauthorized
from common.auth.bearer import bearer_token, required_bearer_token


@pytest.mark.parametrize(("header", "token"), [("Bearer abc.def", "abc.def"), ("bearer  abc ", "abc")])
def test_a_bearer_header_gives_its_token_either_way(header: str, token: str) -> None:
    assert bearer_token({"Authorization": header}) == token
    assert required_bearer_token({"Authorization": header}) == token


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}])
def test_no_header_is_none_when_optional_and_401_without_error_code_when_required(headers: dict[str, str]) -> None:
    assert bearer_token(headers) is None
    with pytest.raises(Unauthorized) as refused:
        required_bearer_token(headers)
    assert refused.value.headers == {"WWW-Authenticate": 'Bearer realm="dicomflow"'}


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token abc"])
def test_a_malformed_header_is_401_invalid_request_either_way(header: str) -> None:
    for parse in (bearer_token, required_bearer_token):
        with pytest.raises(Unauthorized) as refused:
            parse({"Authorization": header})
        assert refused.value.headers is not None
        assert 'error="invalid_request"' in refused.value.headers["WWW-Authenticate"]
