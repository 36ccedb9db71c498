# Sourced by the recorded-run scripts (teacher_recipe.sh, distill_variants.sh); needs $OUT.
timed() {  # timed NAME COMMAND...: run, log to $OUT/logs/NAME.log, append the wall time to $OUT/wall_times.tsv
  local name=$1 start
  shift
  start=$(date +%s)
  "$@" >> "$OUT/logs/$name.log" 2>&1
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$OUT/wall_times.tsv"
}
