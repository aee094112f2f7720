"""OpenTelemetry providers for the process: traces and metrics.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (a collector that forwards to Cloud Trace and
Cloud Monitoring in production), spans and metrics are exported over OTLP/gRPC; without
it the providers still run (instruments work, nothing leaves the process).
"""

import os
import uuid
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE_NAME = "payment-gateway-service"
OTLP_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The providers this process installed; shut them down on exit to flush."""

    meters: MeterProvider
    tracers: TracerProvider

    def shutdown(self) -> None:
        """Flush and stop both providers."""
        self.tracers.shutdown()
        self.meters.shutdown()


def configure_telemetry(component: str) -> Telemetry:
    """Install global meter and tracer providers for ``component`` (worker, api, ...)."""
    resource = Resource.create(
        {
            "service.name": SERVICE_NAME,
            "service.namespace": "payments",
            "service.instance.id": f"{component}-{uuid.uuid4().hex[:8]}",
            "payments.component": component,
        }
    )
    readers: list[MetricReader] = []
    tracers = TracerProvider(resource=resource)
    if os.environ.get(OTLP_ENV):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415 (only with a collector)
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415 (only with a collector)
            OTLPSpanExporter,
        )

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meters = MeterProvider(resource=resource, metric_readers=readers)
    metrics.set_meter_provider(meters)
    trace.set_tracer_provider(tracers)
    return Telemetry(meters, tracers)
