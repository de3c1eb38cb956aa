# Shared by the bench scripts: where the shoal binary is, a scratch folder, a clock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHOAL="${SHOAL_BIN:-$ROOT/artifacts/publish/shoal}"
if [ ! -x "$SHOAL" ]; then
  echo "bench: building the AOT binary (set SHOAL_BIN to use another)" >&2
  dotnet publish "$ROOT/src/Shoal.Cli" -c Release -r linux-x64 -o "$ROOT/artifacts/publish" >/dev/null
fi
WORK="${BENCH_DIR:-$(mktemp -d /tmp/shoal-bench.XXXXXX)}"
mkdir -p "$WORK"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# div A B [DECIMALS]
div() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { printf "%." d "f", a / b }'; }
