"""Dev mode's preparation: central migrations, the demo tenant and its processors."""

from pathlib import Path

import pytest

from gateway.bootstrap import bootstrap
from gateway.dev import DEMO_TENANT, prepare
from gateway.settings import Settings
from schemas.processors import Processor
from tenancy.vendors import list_attachments

pytestmark = pytest.mark.integration


async def test_prepare_is_repeatable_and_attaches_every_processor(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """Running dev preparation twice leaves one demo tenant with the three processors attached."""
    settings = Settings(
        database_url=fresh_dsn,
        local_dir=tmp_path,
        secret_file_dir=tmp_path / "secrets",
        archive_dir=tmp_path / "archive",
    )
    async with bootstrap(settings) as container:
        await prepare(container)
        await prepare(container)
        attachments = await list_attachments(container.db, DEMO_TENANT)
    assert sorted((a.processor, a.precedence) for a in attachments) == [
        (Processor.HESABPAY, 30),
        (Processor.PAYPAL, 20),
        (Processor.STRIPE, 10),
    ]
    assert not any("placeholder" in str(a) for a in attachments)
