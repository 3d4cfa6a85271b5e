"""Settings under the contract's names (PSCT_*), read from the environment; CLI flags override."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model import WEIGHTS
from model.geometry import (
    DEFAULT_ISOCENTRE_TO_DETECTOR_MM,
    DEFAULT_SID_MM,
    SID_RANGE_MM,
    GeometryError,
    RoomDefaults,
)
from service.errors import ConfigError


class Destination:
    """One `AE@host:port` entry of PSCT_DESTINATIONS."""

    def __init__(self, text: str) -> None:
        try:
            ae, address = text.strip().split("@", 1)
            host, port = address.rsplit(":", 1)
            self.ae_title, self.host, self.port = ae.strip(), host.strip().strip("[]"), int(port)
        except ValueError:
            raise ConfigError(f"PSCT_DESTINATIONS entry {text!r} is not AE@host:port") from None
        if not 0 < len(self.ae_title) <= 16 or not 0 < self.port < 65536 or not self.host:
            raise ConfigError(f"PSCT_DESTINATIONS entry {text!r}: AE title 1-16 characters, port 1-65535")

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


# The model served unless PSCT_MODEL_PATH names another .onnx (its .json sidecar beside it): PSCT-Net
# with its full-resolution stage 2 (better than stage 1 alone on validation heads; model/MODEL_CARD.md).
# Stage 1 alone (psct-net.onnx, ~2x faster on CPU) and the physics baseline stay beside it.
DEFAULT_MODEL = WEIGHTS / "psct-net-stage2.onnx"
PHYSICS_BASELINE = WEIGHTS / "physics-baseline.onnx"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PSCT_", extra="ignore")

    home: Path = Path("./var")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    ae_title: str = Field("PSCT", min_length=1, max_length=16)
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(11112, ge=1, le=65535)
    destinations: str = ""
    allowed_aes: str = ""
    allowed_hosts: str = ""
    broker_url: str | None = None
    database_url: str | None = None
    api_keys: str | None = None
    pair_timeout_s: float = Field(300.0, gt=0)
    max_upload_mb: float = Field(64.0, gt=0)
    retention_days: float | None = None
    # Disk watermark: below it the listener answers Out of Resources, REST 503, /readyz fails.
    min_free_mb: float = Field(1024.0, ge=0)
    # DICOM TLS (service/tls.py): the listener requires it when a certificate is set; export when asked.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_export: bool = False
    # Not in the contract's table: delivery retry policy and the model file to serve.
    delivery_attempts: int = Field(5, ge=1)
    delivery_backoff_s: float = Field(2.0, ge=0)
    model_path: Path = DEFAULT_MODEL
    # A running job's lease (worker/lease.py) expires this long after its last renewal.
    lease_s: float = Field(60.0, gt=0)
    # A separate listener's or worker's /metrics, /healthz, /readyz (service/metrics_server.py); 0: none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    # `json`: one JSON object per log line with the job id (service/logs.py); `text` for a terminal.
    log_format: Literal["text", "json"] = "text"
    # The CUDA device a worker runs on (one solo worker per GPU); ignored on CPU.
    cuda_device: int = Field(0, ge=0)
    # Redis redelivers a message a worker took but did not acknowledge after this long (service/queue.py).
    visibility_timeout_s: float = Field(3600.0, gt=0)
    # The distances assumed where a radiograph omits them (README "Geometry defaults"): set them to the
    # room's own when its modality leaves them out (many CR systems), so the head comes out at its scale.
    default_sid_mm: float = Field(DEFAULT_SID_MM, ge=SID_RANGE_MM[0], le=SID_RANGE_MM[1])
    default_isocentre_to_detector_mm: float = DEFAULT_ISOCENTRE_TO_DETECTOR_MM

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("default_isocentre_to_detector_mm")
    @classmethod
    def _fits_the_room(cls, value: float, info: ValidationInfo) -> float:
        try:  # checked against the SID when that one is valid (else its own error names it)
            RoomDefaults(info.data.get("default_sid_mm", DEFAULT_SID_MM), value)
        except GeometryError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def room(self) -> RoomDefaults:
        return RoomDefaults(self.default_sid_mm, self.default_isocentre_to_detector_mm)

    @property
    def destination_list(self) -> list[Destination]:
        return [Destination(d) for d in _split(self.destinations)]

    @property
    def allowed_ae_list(self) -> list[str]:
        return _split(self.allowed_aes)

    @property
    def allowed_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        try:
            return [ipaddress.ip_network(n, strict=False) for n in _split(self.allowed_hosts)]
        except ValueError as exc:
            raise ConfigError(f"PSCT_ALLOWED_HOSTS: {exc}") from None

    @property
    def api_key_list(self) -> list[str]:
        return _split(self.api_keys or "")

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'psct.sqlite'}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'queue.sqlite'}"

    @property
    def embedded_queue(self) -> bool:
        return not self.broker_url

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
