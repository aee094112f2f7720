"""Command: stripe-connect (finish Stripe Connect OAuth for a tenant by hand)."""

from dataclasses import replace
from typing import Annotated, Final

import typer
from pydantic import SecretStr

from gateway.bootstrap import Container
from gateway.cli.runner import EXIT_FAILED, CliState, fail, run, tenant_id_arg
from gateway.vendor_mode import MODE_OF, VendorMode, VendorModeError, base_url, check_stripe_key
from handlers.stripe_connect import (
    SECRET_NAMES,
    ConnectCallback,
    ConnectIncompleteError,
    complete_stripe_connect,
)
from processors.stripe_connect import ConnectCodeError, ConnectError, StripeConnectOAuth
from schemas.processors import Processor
from tenancy.errors import InvalidRequestError, InvalidSecretRefError
from tenancy.secrets import SecretRef
from tenancy.vendors import VendorAttachment

_UNRESOLVED: Final = SecretStr("whsec_unresolved")
"""Stands in for the webhook secret while the arguments are checked, before any I/O."""


def stripe_connect_cmd(
    ctx: typer.Context,
    tenant_id: Annotated[
        str, typer.Option("--tenant-id", help="Tenant id, e.g. tnt_01H...", callback=tenant_id_arg)
    ],
    code: Annotated[str, typer.Option(help="The OAuth authorization code (ac_...), single-use.")],
    project: Annotated[str, typer.Option(help="Secret Manager project for the account's secrets.")],
    webhook_secret_from_secret: Annotated[
        str, typer.Option(help="Secret Manager reference of the platform's Connect webhook secret.")
    ],
    platform_key_from_secret: Annotated[
        str,
        typer.Option(
            help="Secret Manager reference of the platform's Stripe secret key.",
            envvar="PAYMENTS_STRIPE_PLATFORM_KEY_SECRET",
        ),
    ],
    precedence: Annotated[int, typer.Option(help="Routing precedence; lower wins.")] = 100,
) -> None:
    """Exchange a Stripe Connect OAuth code and attach the connected account to a tenant.

    The code is exchanged once (it is single-use); the account's tokens and the webhook
    secret are stored under projects/P/secrets/TENANT/stripe/ENV/..., then attached.
    Values are never printed.

    Example (P = projects/gm-payments-dev/secrets):
    payments-admin-cli stripe-connect --tenant-id tnt_01HXYZ --code ac_1NXz
    --project gm-payments-dev --precedence 100
    --webhook-secret-from-secret P/stripe-connect/webhook_secret/versions/latest
    --platform-key-from-secret P/stripe-platform/api_key/versions/latest
    """
    state: CliState = ctx.obj
    try:
        hook_ref = SecretRef.parse(webhook_secret_from_secret)
        key_ref = SecretRef.parse(platform_key_from_secret)
        draft = ConnectCallback(tenant_id, code, project, _UNRESOLVED, precedence)
    except (InvalidSecretRefError, InvalidRequestError) as exc:
        fail(state, str(exc))

    async def action(c: Container) -> VendorAttachment:
        request = replace(draft, webhook_secret=await c.secrets.access(hook_ref))
        platform_key = await c.secrets.access(key_ref)
        mode = MODE_OF[c.settings.environment]
        check_stripe_key(platform_key.get_secret_value(), mode)
        local = mode is VendorMode.LOCAL_SANDBOX
        url = base_url(Processor.STRIPE, mode, c.settings.sandbox_urls) if local else None
        oauth = StripeConnectOAuth(platform_key, base_url=url)
        return await complete_stripe_connect(
            c.db, c.secrets, oauth, request, production=c.settings.production
        )

    try:
        attached = run(ctx, action)
    except (VendorModeError, ConnectCodeError) as exc:
        fail(state, str(exc))
    except (ConnectError, ConnectIncompleteError) as exc:
        fail(state, str(exc), EXIT_FAILED)
    state.out.print(
        f"[green]✓[/] stripe ({attached.env}) connected to {attached.tenant_id}"
        f" as {attached.account_ref}, precedence {attached.precedence}"
    )
    for name in SECRET_NAMES:
        ref = draft.secret_ref(attached.env, name)
        state.out.print(f"  {name}: {ref}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's command to ``app``."""
    app.command("stripe-connect")(stripe_connect_cmd)
