"""Settings, read once from the environment (prefix PSYCHINTERP_) and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    forwarded_allow_ips: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "X-Forwarded-For/-Proto `psychinterp serve` believes, or '*'. Empty (the default): "
        "trust no proxy, the client address is the TCP peer. Behind nginx on this host: "
        "127.0.0.1. Login throttling and rate limits key on this address.",
    )
    # issue 25, participant path: session starts per client address and per study within a
    # sliding window (stored in the database, so they hold across worker processes), and how
    # long a session may sit idle before its place goes to a new arrival when the study is full.
    session_starts_per_address: int = Field(10, ge=1)
    session_starts_per_study: int = Field(300, ge=1)
    session_start_window_s: int = Field(60, ge=1)
    idle_place_minutes: float = Field(10.0, gt=0)
    run_migrations_on_start: bool = True
    # issue 24, scale-out: where stimulus images live (a directory, or s3://bucket/prefix?
    # endpoint=URL for an S3-compatible store shared by several hosts) and where generation
    # jobs render (local: in the job worker; ray: on the Ray cluster at ray_address).
    storage_url: str = Field(
        default="",
        description="Image store: empty for DATA_DIR/stimuli, a directory path, or "
        "s3://BUCKET/PREFIX?endpoint=http://HOST:9000 (pip install -e '.[s3]').",
    )
    generation_runner: Literal["local", "ray"] = Field(
        "local", description="Default runner of generation jobs that do not name one."
    )
    ray_address: str = Field(
        "auto", description="Ray cluster for the ray runner: auto, local, or ray://HOST:10001."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        kind = value.split(":", 1)[0]
        if kind not in {"cpu", "cuda", "mps"}:
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded_allow_ips(cls, value: str) -> str:
        import ipaddress

        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"forwarded_allow_ips: {entry!r} is not an IP address or network; give "
                    "the proxy's address (e.g. 127.0.0.1 or 10.0.0.0/8), '*', or nothing"
                ) from None
        return ",".join(entries)

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
