# The live path of the main job (sourced by scripts/demo.sh; tests/e2e/test_demo_live.py runs it too):
# a local Kafka broker, SIMULATED raw ticks and weather observations published to it, `ladle stream`
# computing the stream views (feature_repo/streams.py) into the online store, and the server answering
# with values a few seconds old.
#
#   source scripts/demo_live.sh
#   live_start REPO KAFKA_PORT     # broker, publisher, ladle stream in the background (LIVE_PIDS)
#   live_query REST_PORT           # waits for fresh stream rows, prints value, age and SIMULATED
#   live_stop                      # stops them (newest first); demo.sh calls it from its EXIT trap
#
# The repo must be applied with LADLE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:KAFKA_PORT (its Kafka sources
# hold the address). Logs go to LIVE_LOGS (default: a temporary directory).

LIVE_PIDS=()

live_stop() {
  local i
  for ((i = ${#LIVE_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${LIVE_PIDS[$i]}" 2>/dev/null || true
    wait "${LIVE_PIDS[$i]}" 2>/dev/null || true
  done
  LIVE_PIDS=()
}

_live_wait_for() { # FILE TEXT PID WHAT: wait up to 30 s for TEXT in FILE while PID lives
  local _
  for _ in $(seq 1 150); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "demo: $4 exited:" >&2; tail -5 "$1" >&2; return 1; }
    sleep 0.2
  done
  echo "demo: $4 did not start in 30 s:" >&2
  tail -5 "$1" >&2
  return 1
}

live_start() {
  local repo=$1 port=$2
  LIVE_LOGS=${LIVE_LOGS:-$(mktemp -d)}
  LIVE_STARTED=$(date +%s)
  python -m ladle.streaming.devbroker --port "$port" >"$LIVE_LOGS/broker.log" 2>&1 &
  LIVE_PIDS+=($!)
  _live_wait_for "$LIVE_LOGS/broker.log" "^ready" $! "the local Kafka broker" || return 1
  # ticks every 0.5 s, weather every 2 s, so the demo has a few of each within seconds
  ladle -c "$repo" publish --bootstrap-servers "127.0.0.1:$port" --interval 0.5 --weather-interval 2 \
    >"$LIVE_LOGS/publish.log" 2>&1 &
  LIVE_PIDS+=($!)
  _live_wait_for "$LIVE_LOGS/publish.log" "publishing SIMULATED" $! "ladle publish" || return 1
  ladle -c "$repo" stream --metrics-port 0 >"$LIVE_LOGS/stream.log" 2>&1 &
  LIVE_PIDS+=($!)
  _live_wait_for "$LIVE_LOGS/stream.log" "ladle stream:" $! "ladle stream" || return 1
  echo "broker 127.0.0.1:$port, publisher and ladle stream running (logs in $LIVE_LOGS)"
}

live_query() {
  python - "$1" "$LIVE_STARTED" <<'PY'
import json
import sys
import time
import urllib.request
from datetime import UTC, datetime

FEATURES = ["current_price", "price_change_1h", "volume_24h", "volatility_7d", "ma_7d", "simulated"]
CODES = ["crude_oil_wti", "natural_gas"]
url = f"http://127.0.0.1:{sys.argv[1]}/get-online-features"
body = json.dumps(
    {"features": [f"commodity_price_stream:{f}" for f in FEATURES], "entities": {"commodity_code": CODES}}
).encode()
print(f"curl -X POST {url} -d '{body.decode()}'")


def ask() -> dict:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


started = datetime.fromtimestamp(int(sys.argv[2]), UTC)


def fresh(result: dict) -> bool:
    """Every value present and from an event published since live_start (not an earlier run's)."""
    return all(
        status == "PRESENT" and datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= started
        for status, stamp in zip(result["statuses"], result["event_timestamps"], strict=True)
    )


deadline = time.monotonic() + 60
while True:
    answer = ask()
    names = answer["metadata"]["feature_names"]
    price = answer["results"][names.index("current_price")]
    if fresh(price) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
if not fresh(price):
    sys.exit(f"demo: no fresh stream value after 60 s ({price['statuses']}, {price['event_timestamps']}); "
             "see the ladle stream log")
print(f"fresh stream values after {time.monotonic() - deadline + 60:.1f} s of waiting")
now = datetime.now(UTC)
for i, code in enumerate(CODES):
    stamp = datetime.fromisoformat(price["event_timestamps"][i].replace("Z", "+00:00"))
    values = {n: answer["results"][names.index(n)]["values"][i] for n in FEATURES}
    label = "SIMULATED" if values["simulated"] else "real"
    print(f"  {code}: current_price {values['current_price']} ({label}), event time {stamp.isoformat()}, "
          f"age {(now - stamp).total_seconds():.1f} s")
    print("    " + ", ".join(f"{n} {values[n]}" for n in FEATURES[1:]))
PY
}
