from __future__ import annotations

import pytest

from app.config import DEVELOPMENT_SECRET, ConfigurationError, load_settings

STRONG = "x" * 48


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environment="production")
    message = str(caught.value)
    assert "TG_SECRET_KEY" in message
    assert "\n" not in message


def test_production_refuses_debug() -> None:
    with pytest.raises(ConfigurationError, match="TG_DEBUG"):
        load_settings(environment="production", secret_key=STRONG, debug=True)


def test_production_accepts_a_real_secret() -> None:
    settings = load_settings(environment="production", secret_key=STRONG)
    assert settings.json_logs
    assert settings.secret_key.get_secret_value() != DEVELOPMENT_SECRET


def test_environment_variables_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TG_REDIS_URL", "")
    monkeypatch.setenv("TG_ACCESS_TOKEN_MINUTES", "5")
    settings = load_settings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.redis_url is None
    assert settings.is_embedded
    assert settings.access_token_minutes == 5


def test_bad_values_are_reported_by_variable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_ACCESS_TOKEN_MINUTES", "0")
    with pytest.raises(ConfigurationError, match="TG_ACCESS_TOKEN_MINUTES"):
        load_settings()
