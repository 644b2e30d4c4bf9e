#!/bin/sh
# plot.sh OUT.(png|svg) TITLE DIR LABEL [DIR LABEL ...]
#
# Validation loss of several swarmsim runs in one picture, with gnuplot:
# left panel against executed steps (rollbacks included), right panel
# against simulated hours.  Each DIR is a `swarmsim train --out` folder
# holding val.csv (iter,step,sim_hours,val_loss).
set -eu
if [ $# -lt 4 ]; then
    echo "usage: plot.sh OUT.png|OUT.svg TITLE DIR LABEL [DIR LABEL ...]" >&2
    exit 2
fi
command -v gnuplot >/dev/null 2>&1 || { echo "plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
out=$1 title=$2
shift 2
case $out in
*.svg) term="svg size 1100,420 dynamic font 'sans,11'" ;;
*) term="pngcairo size 1100,420 font 'sans,10'" ;;
esac
plots_iter= plots_hours= sep=
while [ $# -ge 2 ]; do
    f=$1/val.csv
    [ -s "$f" ] || { echo "plot.sh: no $f, skipped" >&2; shift 2; continue; }
    plots_iter="$plots_iter$sep'$f' using 1:4 with lines lw 1.5 title '$2'"
    plots_hours="$plots_hours$sep'$f' using 3:4 with lines lw 1.5 title '$2'"
    sep=", "
    shift 2
done
[ -n "$plots_iter" ] || { echo "plot.sh: nothing to plot" >&2; exit 1; }
gnuplot <<GP
set terminal $term
set output '$out'
set datafile separator ','
set key autotitle columnhead
set multiplot layout 1,2 title '$title'
set grid
set ylabel 'validation loss'
set key top right
set xlabel 'executed steps'
plot $plots_iter
set xlabel 'simulated hours'
plot $plots_hours
unset multiplot
GP
