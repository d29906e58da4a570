"""OpenLineage event objects (openlineage-python) for a :class:`~ladle.monitor.lineage.LineageRun`, and the client.

Each event carries: the job (namespace from ``lineage.namespace``, name ``ladle.<job>``) with a
``jobType`` facet; the run id with the ``ladle`` run facet (project, view versions, rows written,
watermark, ...), a ``processing_engine`` facet and, on FAIL, an ``errorMessage`` facet; inputs and
outputs with a ``schema`` facet each, and ``outputStatistics`` (row count) on outputs once known.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    processing_engine_run,
    schema_dataset,
)

from ladle.monitor.lineage_datasets import JOB_TYPES, LADLE_FACET_SCHEMA, PRODUCER, error_text

if TYPE_CHECKING:
    from ladle.config import LineageConfig
    from ladle.monitor.lineage_datasets import LineageDataset, LineageRun

#: How often the http transport retries one event (backoff 0.2 s, 0.4 s): a short outage is bridged,
#: a receiver that is down costs the background thread well under a second per event.
HTTP_RETRY = {"total": 2, "backoff_factor": 0.2, "status_forcelist": [500, 502, 503, 504]}


@attr.define
class LadleRunFacet(RunFacet):
    """Ladle's run facet (``run.facets.ladle``); its JSON schema is ``lineage_facet.json`` beside this module."""

    project: str
    job: str
    facts: dict[str, Any] = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return LADLE_FACET_SCHEMA


def _schema(dataset: LineageDataset) -> dict[str, Any]:
    if not dataset.fields:
        return {}
    fields = [schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in dataset.fields]
    return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)}


def build_event(
    namespace: str, project: str, run: LineageRun, state: str, when: datetime, error: BaseException | None = None
) -> RunEvent:
    """The ``state`` event of ``run`` of ``project`` at ``when`` (UTC), in job namespace ``namespace``."""
    import ladle

    facets: dict[str, Any] = {
        "ladle": LadleRunFacet(project=project, job=run.job, facts=dict(run.facts), producer=PRODUCER),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=getattr(ladle, "__version__", "0.1.0"), name="ladle", producer=PRODUCER
        ),
    }
    if error is not None:
        message, stack = error_text(error)
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="python", stackTrace=stack, producer=PRODUCER
        )
    processing, kind = JOB_TYPES.get(run.job, ("BATCH", run.job.upper()))
    job_facets: dict[str, Any] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType=processing, integration="LADLE", jobType=kind, producer=PRODUCER
        )
    }
    inputs = [InputDataset(namespace=d.namespace, name=d.name, facets=_schema(d)) for d in run.inputs]
    outputs = []
    for d in run.outputs:
        out_facets: dict[str, Any] = {}
        if d.name in run.rows and state in ("COMPLETE", "RUNNING"):
            out_facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=run.rows[d.name], producer=PRODUCER
            )
        outputs.append(OutputDataset(namespace=d.namespace, name=d.name, facets=_schema(d), outputFacets=out_facets))
    return RunEvent(
        eventType=RunState(state),
        eventTime=when.isoformat(),
        run=Run(runId=run.run_id, facets=facets),
        job=Job(namespace=namespace, name=f"ladle.{run.job}", facets=job_facets),
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )


def open_client(settings: LineageConfig, file: str | None) -> OpenLineageClient:
    """An openlineage-python client sending through the configured transport."""
    if settings.transport == "http":
        from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider

        auth = ApiKeyTokenProvider({"apiKey": settings.api_key}) if settings.api_key else TokenProvider({})
        config = HttpConfig(
            url=str(settings.url),
            endpoint=settings.endpoint,
            timeout=settings.timeout_seconds,
            auth=auth,
            retry=HTTP_RETRY,
        )
        return OpenLineageClient(transport=HttpTransport(config))
    if settings.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(file), append=True)))
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport

    return OpenLineageClient(transport=ConsoleTransport(ConsoleConfig()))
