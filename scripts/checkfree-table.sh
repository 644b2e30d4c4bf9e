#!/bin/sh
# checkfree-table.sh OUT [TARGET] - the study's table (markdown) from the
# run folders OUT/runs/STRATEGY_RATE_SEED[_VARIANT] that checkfree-study.sh
# wrote: per strategy and rate, over seeds, the mean (and spread) of the
# final validation loss, the failures met, the executed steps and simulated
# hours to reach TARGET (default: mean final loss of the no-failure runs +
# 0.10), and the simulated hours of the whole run.
set -eu
out=$1
target=${2:-}
if [ -z "$target" ]; then
    target=$(cat "$out"/runs/none_0_*/summary.txt 2>/dev/null |
        awk '$1 == "final_val" && $2 != "nan" {s += $2; n++} END {if (n) printf "%.3f", s / n + 0.10}')
fi
[ -n "$target" ] || { echo "checkfree-table: no no-failure runs to set a target; give TARGET" >&2; exit 1; }
for d in "$out"/runs/*_*_*; do
    [ -f "$d/summary.txt" ] || continue
    name=$(basename "$d")
    # time to target: the first validation at or under it
    hit=$(awk -F, -v t="$target" 'NR > 1 && $4 != "" && $4 + 0 <= t {print $1, $3; exit}' "$d/val.csv")
    [ -n "$hit" ] || hit="- -"
    seed=$(echo "$name" | cut -d_ -f3)
    ref=$(awk '$1 == "final_val" {print $2}' "$out/runs/none_0_$seed/summary.txt" 2>/dev/null)
    awk -v name="$name" -v hit="$hit" -v ref="${ref:-nan}" '
        {v[$1] = $2}
        END {
            d = (ref != "nan" && v["final_val"] != "nan") ? sprintf("%.6f", v["final_val"] - ref) : "nan"
            printf "%s %s %s %s %s %s %s %s %s %s %s %s %s\n", name, v["final_val"], v["failures"],
                v["skipped"], v["fallback"], v["rollbacks"], v["lost_steps"], v["iters"],
                v["sim_hours"], hit, v["status"], v["step_factor"], d
        }' "$d/summary.txt"
done | awk -v target="$target" '
    {
        n = split($1, f, "_"); key = f[1] "_" f[2] (n > 3 ? "_" f[4] : "")
        if (!(key in cnt)) order[++nk] = key
        cnt[key]++
        if ($2 != "nan") { sv[key] += $2; sv2[key] += $2 * $2; nv[key]++ }
        fails[key] += $3; skip[key] += $4; fb[key] += $5; rb[key] += $6; lost[key] += $7
        iters[key] += $8; hours[key] += $9
        if ($10 != "-") { hitn[key]++; hiti[key] += $10; hith[key] += $11 }
        if ($12 != "done") stopped[key]++
        if ($14 != "nan") { dv[key] += $14; dv2[key] += $14 * $14; nd[key]++ }
    }
    END {
        printf "Target validation loss: %.3f (no-failure mean + 0.10).  Means over seeds; ", target
        printf "steps and hours to target over the seeds that reached it.\n\n"
        printf "| strategy | rate /h | seeds | final val (mean ± sd) | Δ vs no failure, same seed (mean ± sd) | failures | skipped | fallback | rollbacks (steps redone) | executed steps | sim hours | reached | steps to target | hours to target |\n"
        printf "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        rank["none"] = 0; rank["checkfree"] = 1; rank["checkfree+"] = 3; rank["copy"] = 4
        rank["uniform"] = 5; rank["random"] = 6; rank["redundant"] = 8
        for (i = 1; i <= nk; i++) {
            k = order[i]; c = cnt[k]; split(k, f, "_")
            m = nv[k] ? sv[k] / nv[k] : 0
            sd = nv[k] > 1 ? sqrt((sv2[k] - nv[k] * m * m) / (nv[k] - 1) + 1e-12) : 0
            r = (f[1] in rank) ? rank[f[1]] : 7
            if (f[3] != "") r += 0.5
            printf "%08.4f %03.1f ", f[2], r | "sort -k1,1 -k2,2n | cut -d\" \" -f3-"
            dm = nd[k] ? dv[k] / nd[k] : 0
            dsd = nd[k] > 1 ? sqrt((dv2[k] - nd[k] * dm * dm) / (nd[k] - 1) + 1e-12) : 0
            printf "| %s%s | %s | %d | %s | %s | %.1f | %.1f | %.1f | %.1f (%.0f) | %.0f | %.2f | %d/%d%s | %s | %s |\n",
                f[1], (f[3] != "" ? " (" f[3] ")" : ""), f[2], c,
                nv[k] ? sprintf("%.4f ± %.4f", m, sd) : "-",
                nd[k] ? sprintf("%+.4f ± %.4f", dm, dsd) : "-", fails[k] / c, skip[k] / c, fb[k] / c, rb[k] / c, lost[k] / c, iters[k] / c,
                hours[k] / c, hitn[k], c, (stopped[k] ? sprintf(", %d stopped", stopped[k]) : ""),
                hitn[k] ? sprintf("%.0f", hiti[k] / hitn[k]) : "-",
                hitn[k] ? sprintf("%.2f", hith[k] / hitn[k]) : "-" | "sort -k1,1 -k2,2n | cut -d\" \" -f3-"
        }
        close("sort -k1,1 -k2,2n | cut -d\" \" -f3-")
    }'
