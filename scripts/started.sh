# Sourced by scripts/test.sh and scripts/bench.sh: what the script starts goes into `started` (pg, kafka),
# and is stopped when it exits.
started=()

stop_started() {
  for what in "${started[@]}"; do
    case "$what" in
      pg) infra/postgres/pg.sh down >/dev/null 2>&1 || true ;;
      kafka) infra/kafka/kafka.sh down >/dev/null 2>&1 || true ;;
    esac
  done
}
trap stop_started EXIT
