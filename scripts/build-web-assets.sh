#!/usr/bin/env bash
# Bring the dashboard's charting library from npm into web/static/vendor/ (served locally: no CDN).
#
# Installs web/node_modules from the lockfile when it is missing or older than the lockfile, then
# copies Chart.js's UMD build and licence. Both folders are gitignored; `make install` runs this.
set -euo pipefail
web="$(cd "$(dirname "$0")/../web" && pwd)"
vendor="$web/static/vendor"

if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  echo "installing the dashboard's npm dependencies into web/node_modules"
  npm ci --prefix "$web" --no-audit --no-fund --loglevel=error
fi

mkdir -p "$vendor"
dist="$web/node_modules/chart.js/dist"
cp "$dist/chart.umd.min.js" "$vendor/chart.umd.min.js"
cp "$web/node_modules/chart.js/LICENSE.md" "$vendor/chart.js-LICENSE.md"
version="$(node -p "require('$web/node_modules/chart.js/package.json').version")"
echo "web/static/vendor: chart.js $version"
