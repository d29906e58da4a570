"""A SIMULATED publisher of raw events: commodity ticks and weather observations on Kafka.

No public source streams commodity ticks, so the demo, the tests and the benchmarks publish
simulated ones (``ladle publish``, docs/live-feed.md). The prices continue the real series
exactly as the live feed does (``feature_repo/feeds.py``): daily closes from
:func:`~ladle.datasets.live.continue_closes` starting at the last real close, and the hourly
Brownian bridge between them from :func:`~ladle.transforms.simulate_ticks`, over a path whose
origin is :data:`PRICE_LOOKBACK` before the start (the live feed's warm-up plus catch-up), so
at a whole hour a published price is the live feed's price of that hour. Between two hourly
ticks of an open market the price is interpolated in log; while the simulated market is shut
it holds the last price with zero volume. Weather continues each station's real observations
(:func:`~ladle.datasets.live_weather.continue_weather`), interpolated between the hours.

Every message is a JSON object with the real wall-clock event time and ``"simulated": true``,
keyed by its entity (one commodity or station stays in one partition, in time order).

>>> with LocalBroker() as broker:
...     publish(Publisher.build(models, weather, seed=2013), PublishSettings(broker.bootstrap_servers, count=5))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ladle.datasets.live import NATURAL_GAS_MODEL, WalkModel, continue_closes
from ladle.datasets.live_weather import continue_weather
from ladle.errors import BackendUnavailableError, MissingExtraError, RequestError
from ladle.transforms.simulate import simulate_ticks

#: How far before the start a price path begins: the live feed's 45-day warm-up and 3-day catch-up.
PRICE_LOOKBACK = timedelta(days=48)
#: How far before the start a weather path begins: the live feed's 1-day warm-up and catch-up.
WEATHER_LOOKBACK = timedelta(days=2)
#: How far past the clock a weather path is built; it is rebuilt (same origin) when reached.
WEATHER_HORIZON = timedelta(days=7)
TICKS_TOPIC = "commodity-ticks"
WEATHER_TOPIC = "weather-observations"
_HOUR_US = 3_600_000_000
_WEATHER_COLUMNS = ("temperature_c", "precipitation_mm", "wind_speed_ms", "wind_gust_ms", "pressure_hpa")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _us(moment: datetime) -> int:
    """Microseconds since the epoch (a naive ``moment`` is UTC)."""
    return (moment.replace(tzinfo=moment.tzinfo or UTC) - _EPOCH) // _MICRO


def rfc3339(us: int) -> str:
    """``2026-12-06T05:31:07.123456Z`` for microseconds since the epoch."""
    return (_EPOCH + us * _MICRO).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_models(wti_closes: pa.Table) -> dict[str, WalkModel]:
    """WTI's walk fitted on its real daily closes (``wti_daily`` extract) and natural gas's made-up one."""
    from ladle.datasets import NATURAL_GAS_CODE, WTI_CODE

    return {WTI_CODE: WalkModel.from_closes(wti_closes["price"].to_numpy()), NATURAL_GAS_CODE: NATURAL_GAS_MODEL}


@dataclass
class _Path:
    """One entity's hourly points: times (µs), values per column."""

    times: np.ndarray[Any, np.dtype[np.int64]]
    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]]

    def bracket(self, us: int) -> tuple[int, int]:
        """Indexes of the last point at or before ``us`` and the first after it (-1 when none)."""
        right = int(np.searchsorted(self.times, us, side="right"))
        return right - 1, right if right < len(self.times) else -1


@dataclass
class Publisher:
    """The simulated paths and how to sample them at a wall-clock instant."""

    models: Mapping[str, WalkModel]
    weather_history: pa.Table | None
    seed: int
    start: datetime
    _prices: dict[str, _Path] = field(default_factory=dict)
    _weather: dict[str, _Path] = field(default_factory=dict)
    _prices_until: int = 0
    _weather_until: int = 0

    @classmethod
    def build(
        cls, models: Mapping[str, WalkModel], weather_history: pa.Table | None, seed: int, start: datetime | None = None
    ) -> Publisher:
        """Paths for ``models`` (commodity code → walk) and the stations of ``weather_history``."""
        if not models:
            raise RequestError("publish: no commodity to simulate")
        moment = (start or datetime.now(UTC)).astimezone(UTC)
        out = cls(dict(models), weather_history, seed, moment)
        out._extend(_us(moment))
        return out

    @property
    def commodities(self) -> list[str]:
        """The simulated commodity codes."""
        return sorted(self.models)

    @property
    def stations(self) -> list[str]:
        """The simulated weather stations."""
        return sorted(self._weather)

    def _extend(self, us: int) -> None:
        if us < self._prices_until and us + _HOUR_US <= self._weather_until:
            return
        moment = _EPOCH + us * _MICRO
        if us >= self._prices_until:
            # As the live feed: closes up to the first one at or after the clock, ticks up to it. The
            # bridge's volatility is estimated from those closes, so building to a later end would
            # change it; a path built this way is the live feed's until that close, then rebuilt.
            origin = self.start - PRICE_LOOKBACK
            closes = pa.concat_tables(
                [continue_closes(code, model, origin, moment, self.seed) for code, model in sorted(self.models.items())]
            )
            last = closes["event_timestamp"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
            per_code = closes["commodity_code"].to_numpy(zero_copy_only=False)
            until = min(int(last[per_code == code].max()) for code in self.models)
            ticks = simulate_ticks(closes, origin, _EPOCH + until * _MICRO, seed=self.seed)
            self._prices = _paths(ticks, "commodity_code", ("price", "volume"))
            self._prices_until = until
        if self.weather_history is not None and self.weather_history.num_rows and us + _HOUR_US > self._weather_until:
            end = moment + WEATHER_HORIZON
            obs = continue_weather(self.weather_history, self.start - WEATHER_LOOKBACK, end, self.seed)
            self._weather = _paths(obs, "location_id", _WEATHER_COLUMNS)
            self._weather_until = _us(end)

    def tick(self, code: str, us: int, previous_us: int | None) -> dict[str, Any]:
        """The tick of ``code`` at ``us``; its volume covers the time since ``previous_us``."""
        self._extend(us)
        path = self._prices[code]
        left, right = path.bracket(us)
        price, volume = path.values["price"], path.values["volume"]
        if left < 0:
            raise RequestError(f"publish: no simulated price of {code} at {rfc3339(us)}")
        value = float(price[left])
        rate = 0.0
        # hourly ticks one hour apart: the market is open between them, trade along the bridge
        if right >= 0 and path.times[right] - path.times[left] <= _HOUR_US:
            share = (us - path.times[left]) / (path.times[right] - path.times[left])
            value = float(np.exp(np.log(price[left]) + share * (np.log(price[right]) - np.log(price[left]))))
            rate = float(volume[right]) / _HOUR_US
        elapsed = 0 if previous_us is None else max(us - previous_us, 0)
        return {
            "commodity_code": code,
            "event_timestamp": rfc3339(us),
            "price": round(value, 4),
            "volume": round(rate * elapsed, 3),
            "simulated": True,
        }

    def observation(self, location: str, us: int, previous_us: int | None) -> dict[str, Any]:
        """The observation of ``location`` at ``us``; its precipitation fell since ``previous_us``."""
        self._extend(us)
        path = self._weather[location]
        left, right = path.bracket(us)
        if left < 0 or right < 0:
            raise RequestError(f"publish: no simulated weather at {location} at {rfc3339(us)}")
        share = (us - path.times[left]) / (path.times[right] - path.times[left])
        out: dict[str, Any] = {"location_id": location, "event_timestamp": rfc3339(us)}
        for column in ("temperature_c", "wind_speed_ms", "pressure_hpa", "wind_gust_ms"):
            a, b = path.values[column][left], path.values[column][right]
            mixed = a + share * (b - a)
            out[column] = None if not np.isfinite(mixed) else round(float(mixed), 2)
        elapsed = 0 if previous_us is None else max(us - previous_us, 0)
        hourly = path.values["precipitation_mm"][right]
        out["precipitation_mm"] = round(float(np.nan_to_num(hourly)) * elapsed / _HOUR_US, 3)
        out["simulated"] = True
        return {k: out[k] for k in ("location_id", "event_timestamp", *_WEATHER_COLUMNS, "simulated")}


def _paths(rows: pa.Table, key: str, columns: tuple[str, ...]) -> dict[str, _Path]:
    out: dict[str, _Path] = {}
    keys = rows[key].to_numpy(zero_copy_only=False)
    times = rows["event_timestamp"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    values = {c: rows[c].cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False) for c in columns}
    for name in sorted(set(keys.tolist())):
        sel = keys == name
        order = np.argsort(times[sel], kind="stable")
        out[str(name)] = _Path(times[sel][order], {c: v[sel][order] for c, v in values.items()})
    return out


@dataclass(frozen=True)
class PublishSettings:
    """Where and how fast to publish; stops after ``duration`` seconds or ``count`` rounds (None: never)."""

    bootstrap_servers: str
    ticks_topic: str = TICKS_TOPIC
    weather_topic: str = WEATHER_TOPIC
    partitions: int = 3
    interval: float = 1.0
    weather_interval: float = 10.0
    duration: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise RequestError("publish: partitions must be at least 1")
        if self.interval <= 0 or self.weather_interval <= 0:
            raise RequestError("publish: intervals must be positive")
        if self.count is not None and self.count < 1:
            raise RequestError("publish: count must be at least 1")


@dataclass
class PublishResult:
    """What a run published."""

    ticks: int = 0
    observations: int = 0
    rounds: int = 0
    first_event: str = ""
    last_event: str = ""


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise MissingExtraError("publishing to Kafka", "stream", "confluent-kafka") from None
    return confluent_kafka


def ensure_topics(
    bootstrap_servers: str, topics: Mapping[str, int], config: Mapping[str, str] | None = None, timeout: float = 5.0
) -> list[str]:
    """Create the topics that do not exist (name → partitions); return the ones created.

    Topics get explicit ``retention.ms`` and ``retention.bytes`` (unlimited by default), because
    some Kafka-protocol brokers (Tansu) do not report them in describe-configs and clients that
    read them (quixstreams) then fail.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    _kafka()
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:  # librdkafka raises KafkaException with no subclass per cause
        raise BackendUnavailableError(f"publish: no Kafka broker answers at {bootstrap_servers}: {exc}") from exc
    settings = {"retention.ms": "-1", "retention.bytes": "-1", **(config or {})}
    wanted = [NewTopic(t, num_partitions=n, replication_factor=1, config=settings) for t, n in topics.items()]
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    for name, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BackendUnavailableError(f"publish: cannot create topic {name}: {exc}") from exc
    return [t.topic for t in missing]


class _Sender:
    """One producer and what has been sent: the previous event time per entity, counts, failures."""

    def __init__(self, publisher: Publisher, settings: PublishSettings) -> None:
        self.publisher, self.settings = publisher, settings
        self.producer = _kafka().Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5})
        self.failures: list[str] = []
        self.result = PublishResult()
        self._last: dict[tuple[str, str], int] = {}

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def _send(self, topic: str, key: str, message: dict[str, Any], us: int) -> None:
        self.producer.produce(topic, json.dumps(message).encode(), key.encode(), callback=self._delivered)
        self._last[(topic, key)] = us

    def round(self, us: int, weather: bool) -> None:
        """A tick of every commodity at ``us`` and, with ``weather``, an observation of every station."""
        topic = self.settings.ticks_topic
        for code in self.publisher.commodities:
            self._send(topic, code, self.publisher.tick(code, us, self._last.get((topic, code))), us)
            self.result.ticks += 1
        if weather:
            topic = self.settings.weather_topic
            for station in self.publisher.stations:
                self._send(
                    topic, station, self.publisher.observation(station, us, self._last.get((topic, station))), us
                )
                self.result.observations += 1
        self.producer.poll(0)
        self.result.rounds += 1
        self.result.first_event = self.result.first_event or rfc3339(us)
        self.result.last_event = rfc3339(us)

    def finish(self) -> PublishResult:
        """Flush; :class:`BackendUnavailableError` when a message was not delivered."""
        left = self.producer.flush(30)
        if self.failures or left:
            raise BackendUnavailableError(
                f"publish: {len(self.failures) + left} messages were not delivered to {self.settings.bootstrap_servers}"
                + (f": {self.failures[0]}" if self.failures else "")
            )
        return self.result


def publish(
    publisher: Publisher,
    settings: PublishSettings,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_round: Callable[[PublishResult], None] | None = None,
) -> PublishResult:
    """Publish a tick of every commodity each ``interval`` and an observation of every station each
    ``weather_interval``, at the clock's time, until ``duration``/``count`` (or KeyboardInterrupt)."""
    topics = {settings.ticks_topic: settings.partitions}
    if publisher.stations:
        topics[settings.weather_topic] = settings.partitions
    ensure_topics(settings.bootstrap_servers, topics)
    sender = _Sender(publisher, settings)
    began = time.monotonic()
    next_weather = began
    try:
        while True:
            weather = bool(publisher.stations) and time.monotonic() >= next_weather
            if weather:
                next_weather += settings.weather_interval
            sender.round(_us(clock()), weather)
            if on_round is not None:
                on_round(sender.result)
            rounds = sender.result.rounds
            if settings.count is not None and rounds >= settings.count:
                break
            if settings.duration is not None and time.monotonic() - began + settings.interval > settings.duration:
                break
            time.sleep(max(0.0, began + rounds * settings.interval - time.monotonic()))
    finally:
        result = sender.finish()
    return result
