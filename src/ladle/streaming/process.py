"""``ladle stream`` as a library: find the stream views, check the broker, build and run the runner.

>>> process = StreamProcess.open(FeatureStore(repo_path="feature_repo"), views=["commodity_price_stream"])
>>> process.run()          # until process.stop() (the CLI calls it on SIGTERM / SIGINT)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from ladle.definitions import KafkaSource, StreamFeatureView
from ladle.errors import BackendUnavailableError, ConfigError, DefinitionError, FeatureViewNotFoundError, LadleError
from ladle.registry.stream_sessions import counter_total, recorded_session
from ladle.streaming.decode import Decoder
from ladle.streaming.metrics import MetricsServer, StreamMetrics
from ladle.streaming.runner import EngineFactory, RunnerSettings, SourcePlan, StreamRunner, default_engine_factory
from ladle.streaming.sink import open_sink

if TYPE_CHECKING:
    from ladle.online.base import OnlineStore
    from ladle.store import FeatureStore

log = logging.getLogger(__name__)


def stream_views(store: FeatureStore, names: Sequence[str] = ()) -> list[StreamFeatureView]:
    """The registry's stream feature views over Kafka sources (``names`` only, when given), with
    their ``udf``/``derive`` bound to the feature repo's functions."""
    snapshot = store.snapshot(allow_cache=False)
    kafka = {
        n: v
        for n, v in snapshot.feature_views.items()
        if isinstance(v, StreamFeatureView) and isinstance(v.source, KafkaSource)
    }
    for name in names:
        if name not in kafka:
            known = ", ".join(sorted(kafka)) or "none"
            raise FeatureViewNotFoundError(
                name, store.project, detail=f"Stream feature views over Kafka sources: {known}"
            )
    chosen = [kafka[n] for n in (names or sorted(kafka))]
    if not chosen:
        raise DefinitionError(
            f"project '{store.project}' has no stream feature views over Kafka sources; define a "
            "StreamFeatureView with a KafkaSource and run 'ladle apply' (see docs/streaming.md)"
        )
    return [v for v in store.bind_views(chosen) if isinstance(v, StreamFeatureView)]


def lookback_us(source: KafkaSource, views: Sequence[StreamFeatureView]) -> int:
    """How far before a partition's newest event time the restored history reaches (µs):
    the longest window plus the slide plus the watermark delay."""
    longest = max((v.max_window + (v.slide_interval or timedelta(0)) for v in views), default=timedelta(0))
    return (longest + source.watermark_delay_threshold) // timedelta(microseconds=1)


def source_plans(store: FeatureStore, views: Sequence[StreamFeatureView]) -> list[SourcePlan]:
    """One plan per Kafka source read by ``views``."""
    by_source: dict[str, list[StreamFeatureView]] = {}
    sources: dict[str, KafkaSource] = {}
    for view in views:
        assert isinstance(view.source, KafkaSource)
        by_source.setdefault(view.source.name, []).append(view)
        sources[view.source.name] = view.source
    plans = []
    roots: dict[tuple[str, str], str] = {}
    for name, source in sorted(sources.items()):
        decoder = Decoder(source, by_source[name])
        offline = open_sink(source, store.config, store.repo_path, decoder.schema)
        clash = roots.setdefault((offline.location, source.topic if offline.shared_by_topic else ""), name)
        if clash != name:
            raise DefinitionError(
                f"kafka sources '{clash}' and '{name}' keep their events in the same place {offline.location}; "
                "give them different batch sources"
            )
        plans.append(SourcePlan(source, by_source[name], decoder, offline, lookback_us(source, by_source[name])))
    return plans


def bootstrap_servers(views: Sequence[StreamFeatureView], kafka: Mapping[str, Any]) -> str:
    """The one Kafka cluster of the process: ``stream.kafka['bootstrap.servers']`` or the sources'."""
    if "bootstrap.servers" in kafka:
        return str(kafka["bootstrap.servers"])
    servers = {v.source.kafka_bootstrap_servers for v in views if isinstance(v.source, KafkaSource)}
    if len(servers) > 1:
        raise ConfigError(
            f"the stream views read {len(servers)} Kafka clusters ({', '.join(sorted(servers))}); one ladle stream "
            "process reads one: run one per cluster with --views, or set stream.kafka.bootstrap.servers"
        )
    return servers.pop()


def check_broker(config: Mapping[str, Any], timeout: float) -> dict[str, int]:
    """Topic → partition count of the cluster; BackendUnavailableError when it does not answer in time."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**config, "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BackendUnavailableError(
            f"Kafka at {config.get('bootstrap.servers')} did not answer in {timeout:g} s: "
            f"{exc.args[0].str() if exc.args else exc}"
        ) from None
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def ensure_dead_letter_topics(config: Mapping[str, Any], topics: Mapping[str, int], suffix: str) -> None:
    """Create ``{topic}{suffix}`` for each source topic that lacks one (as many partitions as the
    source; the cluster's default replication). A cluster that refuses (ACLs) is logged, not fatal:
    its operators create the topics."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(dict(config))
    existing = check_broker(config, 10)
    wanted = [NewTopic(f"{t}{suffix}", max(n, 1), -1) for t, n in topics.items() if f"{t}{suffix}" not in existing]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=10).items():
        try:
            future.result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is not None and err.name() == "TOPIC_ALREADY_EXISTS":
                continue
            log.warning("cannot create dead-letter topic %s: %s (create it yourself)", topic, err.str() if err else exc)


class StreamProcess:
    """A stream runner with its online store, metrics endpoint and readiness checks."""

    def __init__(
        self,
        store: FeatureStore,
        runner: StreamRunner,
        online: OnlineStore,
        metrics_port: int,
        metrics_host: str = "0.0.0.0",  # probes come from the cluster network
    ) -> None:
        self.store = store
        self.runner = runner
        self.online = online
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.server: MetricsServer | None = None
        self._ready_store: OnlineStore | None = None

    @classmethod
    def open(
        cls,
        store: FeatureStore,
        views: Sequence[str] = (),
        group_id: str | None = None,
        metrics_port: int | None = None,
        engine_factory: EngineFactory = default_engine_factory,
        online: OnlineStore | None = None,
        broker_timeout: float = 5.0,
    ) -> StreamProcess:
        """Check everything a run needs (views, config, broker) and build the process; nothing runs yet."""
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            from ladle.errors import MissingExtraError

            raise MissingExtraError("Kafka stream", "stream", "confluent-kafka") from None
        config = store.config.stream
        chosen = stream_views(store, views)
        plans = source_plans(store, chosen)
        servers = bootstrap_servers(chosen, config.kafka)
        settings = RunnerSettings(
            group_id=group_id or config.group_id or f"ladle-{store.project}",
            bootstrap_servers=servers,
            kafka=dict(config.kafka),
            dead_letter_suffix=config.dead_letter_suffix,
            max_batch_events=config.max_batch_events,
            poll_timeout_ms=config.poll_timeout_ms,
            offline_flush_seconds=config.offline_flush_seconds,
            offline_flush_events=config.offline_flush_events,
        )
        producer_config = settings.producer_config()
        topics = check_broker(producer_config, broker_timeout)
        present = {p.source.topic: topics[p.source.topic] for p in plans if p.source.topic in topics}
        for plan in plans:
            if plan.source.topic not in topics:
                log.warning("topic %s does not exist yet; reading it once it does", plan.source.topic)
        ensure_dead_letter_topics(producer_config, present, settings.dead_letter_suffix)
        store_online = online if online is not None else store.online_store
        runner = StreamRunner(store.project, plans, store_online, settings, StreamMetrics(), engine_factory)
        port = config.metrics_port if metrics_port is None else metrics_port
        return cls(store, runner, store_online, port)

    def ready_checks(self) -> dict[str, str | None]:
        """Each readiness check and its problem (None: fine)."""
        checks: dict[str, str | None] = {}
        try:
            check_broker(self.runner.settings.producer_config(), 1.0)
            checks["kafka"] = None
        except LadleError as exc:
            checks["kafka"] = str(exc)
        try:
            if self._ready_store is None:  # its own connection: the loop's is not shared across threads
                from ladle.online.base import open_online_store

                self._ready_store = open_online_store(self.store.config)
            self._ready_store.ping()
            checks["online_store"] = None
        except LadleError as exc:
            checks["online_store"] = str(exc)
        for plan in self.runner.plans:
            try:
                plan.log.probe_writable()
                checks[f"offline:{plan.source.name}"] = None
            except LadleError as exc:
                checks[f"offline:{plan.source.name}"] = str(exc)
        return checks

    def start_metrics(self) -> int | None:
        """Serve ``/metrics``, ``/health`` and ``/ready`` (unless the port is 0); the bound port."""
        if not self.metrics_port:
            return None
        port = self.metrics_port
        try:
            self.server = MetricsServer(self.metrics_host, port, self.runner.metrics, self.ready_checks).start()
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}") from None
        return self.server.port

    def run(self) -> None:
        """Run until :meth:`stop`; the metrics endpoint serves meanwhile."""
        if self.server is None:
            self.start_metrics()
        views = [v.name for plan in self.runner.plans for v in plan.views]
        try:
            with recorded_session(self.store, views, lambda: counter_total(self.runner.metrics.emitted)):
                self.runner.run()
        finally:
            self.close()

    def stop(self) -> None:
        """Finish the micro-batch, flush, commit and return from :meth:`run`."""
        self.runner.stop()

    def close(self) -> None:
        """Stop the metrics endpoint and release stores."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._ready_store is not None:
            self._ready_store.close()
            self._ready_store = None

    @contextmanager
    def stopping_on_signals(self) -> Iterator[None]:
        """While inside, SIGTERM and SIGINT stop the process gracefully (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: finishing the micro-batch, flushing and committing", signum)
            self.stop()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
