"""Every AWS client of the daemon comes from one session per profile, so the service
models a session loads are parsed once, not once per mapping on the event loop."""

from __future__ import annotations

from connectors.aws.client import session
from connectors.aws.config import AwsConnectionConfig


def test_clients_of_one_profile_share_a_session() -> None:
    first = session(AwsConnectionConfig(endpoint_url="http://127.0.0.1:1"))
    second = session(AwsConnectionConfig(region="eu-west-1"))
    assert first is second


def test_each_profile_has_its_own_session(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[one]\naws_access_key_id = a\naws_secret_access_key = b\n"
        "[two]\naws_access_key_id = c\naws_secret_access_key = d\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    one = session(AwsConnectionConfig(profile="one"))
    two = session(AwsConnectionConfig(profile="two"))
    assert one is not two
    assert one is session(AwsConnectionConfig(profile="one"))
    assert one.profile_name == "one" and two.profile_name == "two"
