"""All configuration, read once from the environment (and `.env`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; every field maps to a `TICKETING_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="TICKETING_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/ticketing.db"
    admin_token: str | None = None
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    order_ttl_seconds: int = Field(default=900, ge=1)
    expiry_interval_seconds: float = Field(default=30.0, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Orders and mock notifications arriving together are written in one transaction,
    # up to this many (kit/batching.py); 1 writes each on its own.
    batch_max: int = Field(default=32, ge=1, le=1000)
    wechat_api_base: str = "https://api.mch.weixin.qq.com"
    public_base_url: str = "http://localhost:8080"
    # Named fault points for atomicity drills; never enable in production.
    fault_injection: bool = False
    fault_state_path: str = "var/faults.json"
