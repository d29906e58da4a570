#!/usr/bin/env bash
# The main job, on the embedded defaults (SQLite registry + online store, Parquet + DuckDB offline):
# install Ladle, build feature_repo on the real data in data/ (at its real dates), ingest, materialize,
# catch the simulated live feed up to now, serve REST and gRPC, answer the platform's query, show the
# live path (a local Kafka broker, SIMULATED raw ticks, `ladle stream` computing the stream views, the
# server answering with values seconds old), and keep serving and streaming until Ctrl-C.
#   LADLE_DEMO_SERVE=0 bash scripts/demo.sh    # stop after the query instead of serving
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=feature_repo
REST_PORT=${LADLE_SERVE_PORT:-8080}
GRPC_PORT=${LADLE_SERVE_GRPC_PORT:-6566}
KAFKA_PORT=${LADLE_DEMO_KAFKA_PORT:-19092}
# The repo's Kafka sources hold the broker address: apply them with the demo's broker.
export LADLE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT

# The server's ports must be free before anything starts: a server already there would answer the
# demo's queries in place of Ladle's. A plain bind fails on a port that anything listens on.
busy=$(python3 - "$REST_PORT" "$GRPC_PORT" "$KAFKA_PORT" <<'PY'
import socket
import sys

for port in sys.argv[1:]:
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", int(port)))
    except OSError:
        print(port)
    finally:
        probe.close()
PY
)
if [ -n "$busy" ]; then
  echo "demo: port $(echo $busy | tr ' ' '+') on 127.0.0.1 is already in use (another server?): stop it, or run LADLE_SERVE_PORT=18080 LADLE_SERVE_GRPC_PORT=16566 LADLE_DEMO_KAFKA_PORT=19093 bash scripts/demo.sh" >&2
  exit 1
fi

bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "ingest the real data sets into the offline store, at their real dates (idempotent)"
ladle -c "$REPO" ingest
step "apply the feature repo to the registry"
ladle -c "$REPO" apply
step "materialize to the online store, up to now"
ladle -c "$REPO" materialize-incremental now
step "live feed: push SIMULATED fresh rows continuing each real series up to now (docs/live-feed.md)"
ladle -c "$REPO" feed

step "the platform's query through the Python SDK"
python - <<'PY'
import pandas as pd
from ladle import FeatureStore

store = FeatureStore(repo_path="feature_repo")
print("online (live feed, simulated):")
print(store.get_online_features(
    features=["commodity_price_features:current_price",
              "commodity_price_features:price_change_24h",
              "commodity_price_features:volatility_7d",
              "commodity_price_features:simulated"],
    entity_rows=pd.DataFrame({"commodity_code": ["crude_oil_wti", "natural_gas"]}),
).to_dict())
print("historical (real WTI closes of 2013):")
print(store.get_historical_features(
    entity_df=pd.DataFrame({"commodity_code": ["crude_oil_wti"] * 3,
                            "event_timestamp": pd.to_datetime(["2013-06-01", "2013-09-01", "2013-12-01"], utc=True)}),
    features=["commodity_price_features:current_price",
              "commodity_price_features:ma_7d",
              "commodity_price_features:rsi_14d",
              "commodity_price_features:simulated"],
).to_df().to_string(index=False))
PY

step "start the server: REST on :$REST_PORT, gRPC on :$GRPC_PORT"
ladle -c "$REPO" serve --port "$REST_PORT" --grpc-port "$GRPC_PORT" &
SERVER=$!
source scripts/demo_live.sh
trap 'live_stop; kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  kill -0 $SERVER 2>/dev/null || { echo "demo: ladle serve exited (its error is above)" >&2; exit 1; }
  curl -fsS "http://127.0.0.1:$REST_PORT/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
QUERY='{"features": ["commodity_price_features:current_price", "commodity_price_features:price_change_24h"], "entities": {"commodity_code": ["crude_oil_wti"]}}'
step "curl -X POST http://127.0.0.1:$REST_PORT/get-online-features -d '$QUERY'"
curl -fsS -X POST "http://127.0.0.1:$REST_PORT/get-online-features" -H "Content-Type: application/json" -d "$QUERY"
echo

step "the same query over gRPC (feast.serving.ServingService/GetOnlineFeatures, Feast's protos)"
python - "$GRPC_PORT" <<'PY'
import sys

import grpc

from ladle.server._proto.feast.serving import ServingService_pb2 as pb
from ladle.server._proto.feast.serving import ServingService_pb2_grpc as rpc
from ladle.server._proto.feast.types import Value_pb2 as value_pb

request = pb.GetOnlineFeaturesRequest(
    features=pb.FeatureList(val=["commodity_price_features:current_price", "commodity_price_features:price_change_24h"])
)
request.entities["commodity_code"].val.append(value_pb.Value(string_val="crude_oil_wti"))
with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    reply = rpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=10)
for name, vector in zip(reply.metadata.feature_names.val, reply.results):
    value = vector.values[0]
    print(f"  {name}: {getattr(value, value.WhichOneof('val'))} ({pb.FieldStatus.Name(vector.statuses[0])})")
PY

step "live path: local Kafka broker on :$KAFKA_PORT, ladle publish (SIMULATED ticks), ladle stream (docs/streaming.md)"
live_start "$REPO" "$KAFKA_PORT"
step "commodity_price_stream over REST: the stream's newest values, their age, SIMULATED"
live_query "$REST_PORT"

cat <<MSG

Ladle is serving feature_repo (project commodity_analytics):
  REST   POST http://127.0.0.1:$REST_PORT/get-online-features   (Feast's JSON; OpenAPI at /docs)
  gRPC   127.0.0.1:$GRPC_PORT   feast.serving.ServingService/GetOnlineFeatures
  health http://127.0.0.1:$REST_PORT/health, /ready;  metrics http://127.0.0.1:$REST_PORT/metrics
  CLI    .venv/bin/ladle -c feature_repo get-online-features -f commodity_price_features -e commodity_code=crude_oil_wti
  live   Kafka 127.0.0.1:$KAFKA_PORT: ladle publish → commodity-ticks, weather-observations → ladle stream →
         commodity_price_stream, weather_stream (SIMULATED; logs in $LIVE_LOGS)
MSG
if [ "${LADLE_DEMO_SERVE:-1}" = "0" ]; then exit 0; fi
echo "Serving and streaming until Ctrl-C."
wait $SERVER
