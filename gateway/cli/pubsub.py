"""Command: pubsub-bootstrap, which creates the Pub/Sub topology on the emulator or a project."""

import asyncio
import os
from typing import Annotated, Final

import typer

from gateway.cli.runner import EXIT_FAILED, CliState, fail, load_settings
from gateway.logging import configure_logging
from outbox.pubsub_admin import (
    PubSubUnavailableError,
    Timeouts,
    TopologyApplyError,
    ensure_topology,
)
from outbox.pubsub_specs import Outcome, TopologyReport
from schemas.topology import TOPOLOGY

DEFAULT_PROJECT: Final = "payments-dev"
ENV_HOST: Final = "PUBSUB_EMULATOR_HOST"
_STYLES: Final = {Outcome.CREATED: "green", Outcome.PRESENT: "none", Outcome.UPDATED: "yellow"}


def pubsub_bootstrap_cmd(
    ctx: typer.Context,
    project: Annotated[
        str | None,
        typer.Option(help=f"GCP project; default PAYMENTS_GCP_PROJECT, else {DEFAULT_PROJECT}."),
    ] = None,
    prefix: Annotated[str, typer.Option(help="Prefix for every topic and subscription name.")] = "",
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to wait for Pub/Sub's first answer.")
    ] = 10.0,
) -> None:
    """Create the topics and subscriptions of schemas/topology.py; safe to re-run.

    Existing resources are compared with the definition: retention, ack deadline, retry and
    dead-letter policies are updated in place; a different topic or message-ordering setting
    is reported (exit 1), since Pub/Sub can only change it by re-creating the subscription.
    With PUBSUB_EMULATOR_HOST set, it talks to the emulator.

    Example: PUBSUB_EMULATOR_HOST=127.0.0.1:8085 payments-admin-cli pubsub-bootstrap
    """
    state: CliState = ctx.obj
    settings = load_settings(state)
    configure_logging(settings.log_level, stream="stderr")
    project = project or settings.gcp_project or DEFAULT_PROJECT
    emulator = os.environ.get(ENV_HOST)
    where = f"the emulator at {emulator}" if emulator else f"project {project}"
    topology = TOPOLOGY.with_prefix(prefix)
    try:
        report = asyncio.run(
            ensure_topology(topology, project=project, timeouts=Timeouts(probe_seconds=timeout))
        )
    except PubSubUnavailableError as exc:
        hint = "" if emulator or ENV_HOST in str(exc) else f"; for the emulator, set {ENV_HOST}"
        fail(state, f"cannot use Pub/Sub on {where}: {exc}{hint}")
    except TopologyApplyError as exc:
        fail(state, f"Pub/Sub on {where} failed part-way, re-run to finish: {exc}", EXIT_FAILED)
    _print(state, report, where)


def _print(state: CliState, report: TopologyReport, where: str) -> None:
    for resource in report.resources:
        outcome = resource.outcome
        state.out.print(
            f"[{_STYLES[outcome]}]{outcome:<8}[/] {resource.kind:<12} {resource.name}",
            highlight=False,
        )
        for drift in resource.drift:
            change = (
                f"was {drift.actual}, now {drift.expected}"
                if drift.fixed
                else f"is {drift.actual}, want {drift.expected} [red](cannot change in place)[/]"
            )
            state.out.print(f"{'':<8}   {drift.field}: {change}", highlight=False)
    state.out.print(
        f"{len(report.created)} created, {len(report.present)} present,"
        f" {len(report.updated)} updated on {where}"
    )
    if report.unresolved:
        names = ", ".join(sorted({name for name, _ in report.unresolved}))
        fail(
            state,
            f"{names}: drift Pub/Sub cannot update in place; delete the subscription and run"
            " pubsub-bootstrap again (undelivered messages on it are lost)",
            EXIT_FAILED,
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("pubsub-bootstrap")(pubsub_bootstrap_cmd)
