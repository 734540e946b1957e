"""Settings, read once from the environment (prefix PSYCHINTERP_) and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything configurable about a psychinterp deployment."""

    model_config = SettingsConfigDict(
        env_prefix="PSYCHINTERP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./psychinterp.db"
    data_dir: Path = Path("./psychinterp-data")
    device: str = "cpu"
    secret_key: str = Field(
        default="",
        description="Signs admin sessions and salts worker-ID hashes. Set it in production; "
        "when empty a random key is generated and stored in DATA_DIR/secret_key.",
    )
    public_url: str = "http://127.0.0.1:8000"
    max_upload_bytes: int = 5_000_000
    run_migrations_on_start: bool = True

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        kind = value.split(":", 1)[0]
        if kind not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @property
    def stimuli_dir(self) -> Path:
        """Content-addressed image store."""
        return self.data_dir / "stimuli"

    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated once and kept in the data dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        import secrets

        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` instead)."""
    return Settings()
