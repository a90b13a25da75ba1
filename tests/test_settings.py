"""Settings come from STUDIO_* variables, each one documented in docs/settings.md."""

from pathlib import Path

import pytest

from studio.errors import SettingsError
from studio.settings import SETTINGS, auth_pairs, load_settings

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented_in_the_settings_page(setting):
    assert f"| `{setting.name}` |" in SETTINGS_PAGE.read_text()


def test_defaults_listen_only_on_this_machine(tmp_path):
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    assert (settings.host, settings.port, settings.max_upload_mb) == ("127.0.0.1", 7860, 200)
    assert settings.models_dir == tmp_path / "models" and settings.models_dir.is_dir()


def test_a_bad_number_is_explained(tmp_path):
    with pytest.raises(SettingsError, match="STUDIO_PORT must be a whole number above 0, not 'abc'"):
        load_settings({"STUDIO_HOME": str(tmp_path), "STUDIO_PORT": "abc"})


def test_auth_from_pairs_or_file(tmp_path):
    assert auth_pairs("ann:pw1,bob:pw2") == [("ann", "pw1"), ("bob", "pw2")]
    users = tmp_path / "users"
    users.write_text("ann:pw1\nbob:pw:with:colons\n")
    assert auth_pairs(str(users)) == [("ann", "pw1"), ("bob", "pw:with:colons")]
    with pytest.raises(SettingsError, match="user:password pairs"):
        auth_pairs("justaname")
