#!/usr/bin/env bash
# Refresh the Swagger UI files that /docs serves from the package (no CDN: /docs works offline).
# Only the two assets the page loads are kept, with the licence files that cover them.
#   bash scripts/vendor_swagger_ui.sh 5.35.0
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: vendor_swagger_ui.sh VERSION (of the swagger-ui-dist npm package)}
DEST=src/ladle/server/static/swagger-ui
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf "swagger-ui-dist-$VERSION.tgz")
mkdir -p "$DEST"
for f in swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt; do
  cp "$WORK/package/$f" "$DEST/$f"
done
printf '%s\n' "$VERSION" > "$DEST/VERSION"
echo "vendored swagger-ui-dist $VERSION into $DEST"
