# simtui's resource probe for hosts without python3: the agent's JSON lines
# (facts, then one sample per interval; no GPUs) in POSIX sh, run as
#   sh -c "$(cat probe.sh)" sh INTERVAL FIRST_DELTA DISK_DIR
# It reads /proc with the shell's own `read`; df and sleep are its only
# processes per sample. It ends when stdin closes (the connection is gone),
# taking its sleep along, or at a write to a closed connection.
set -f
interval=$1 first=$2 dir=$3
trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
exec 3<&0  # an asynchronous list gets /dev/null as stdin, unless given a copy
(while read -r _; do :; done <&3; kill $$) &
case $dir in
  "~") dir=$HOME ;;
  "~/"*) dir=$HOME/${dir#"~/"} ;;
esac
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac

json_string() {  # $1 as a JSON string in $str
  rest=$1 str=
  while :; do
    head=${rest%%[\"\\]*}
    [ "$head" = "$rest" ] && break
    rest=${rest#"$head"}
    str=$str$head\\${rest%"${rest#?}"}
    rest=${rest#?}
  done
  str=\"$str$rest\"
}

read_cpu() {  # t_NAME=total, b_NAME=busy jiffies for cpu, cpu0, cpu1, ...; cores=count
  cores=0
  while read -r name user nice system idle iowait irq softirq steal rest; do
    case $name in cpu*) ;; *) break ;; esac
    total=$((user + nice + system + idle + ${iowait:-0} + ${irq:-0} + ${softirq:-0} + ${steal:-0}))
    eval "t_$name=$total b_$name=$((total - idle - ${iowait:-0}))"
    [ "$name" = cpu ] || cores=$((cores + 1))
  done < /proc/stat
}

busy_percent() {  # $1 = cpu name: busy % since the last call in $pct
  eval "dt=\$((t_$1 - pt_$1)) db=\$((b_$1 - pb_$1)) pt_$1=\$t_$1 pb_$1=\$b_$1"
  if [ "$dt" -gt 0 ]; then
    permille=$((1000 * db / dt))
    pct=$((permille / 10)).$((permille % 10))
  else
    pct=null
  fi
}

cpu_percents() {  # $total_pct and $per_core (a JSON list's items) since the last call
  read_cpu
  busy_percent cpu
  total_pct=$pct per_core= sep=
  i=0
  while [ "$i" -lt "$cores" ]; do
    busy_percent "cpu$i"
    per_core=$per_core$sep$pct sep=,
    i=$((i + 1))
  done
}

while read -r key value; do
  [ "$key" = btime ] && btime=$value
done < /proc/stat
read -r hostname < /proc/sys/kernel/hostname
read -r kernel < /proc/sys/kernel/osrelease
model= os=
while IFS=: read -r key value; do
  case $key in "model name"*|Hardware*) model=${value# }; break ;; esac
done < /proc/cpuinfo
if [ -r /etc/os-release ]; then
  while IFS== read -r key value; do
    [ "$key" = PRETTY_NAME ] && os=${value#\"} && os=${os%\"}
  done < /etc/os-release
fi
cpu_percents
json_string "$hostname"; facts="{\"hostname\":$str"
json_string "$model"; facts="$facts,\"cpu_model\":$str,\"cpu_count\":$cores"
json_string "$os"; facts="$facts,\"os\":$str"
json_string "$kernel"; facts="$facts,\"kernel\":$str,\"python\":null,\"gpu_driver\":null,\"cuda\":null}"
printf '{"facts":%s}\n' "$facts" || exit 0

nap() {  # sleep $1 seconds; a TERM from the stdin watcher cuts it short
  sleep "$1" &
  sleeper=$!
  wait "$sleeper"
}

nap "$first"
while :; do
  read -r up rest < /proc/uptime
  cpu_percents
  mem_available= mem_free=0 buffers=0 cached=0
  while read -r key value unit; do
    case $key in
      MemTotal:) mem_total=$value ;;
      MemAvailable:) mem_available=$value ;;
      MemFree:) mem_free=$value ;;
      Buffers:) buffers=$value ;;
      Cached:) cached=$value ;;
      SwapTotal:) swap_total=$value ;;
      SwapFree:) swap_free=$value ;;
    esac
  done < /proc/meminfo
  : "${mem_available:=$((mem_free + buffers + cached))}"
  read -r l1 l5 l15 rest < /proc/loadavg
  disk=$dir
  while [ ! -d "$disk" ]; do disk=${disk%/*}; disk=${disk:-/}; done
  set -- $(df -Pk "$disk" 2>/dev/null)
  disk_total=null disk_free=null
  if [ $# -ge 6 ]; then
    shift $(($# - 6))  # the data row: filesystem 1024-blocks used available capacity mount
    disk_total=$(($2 * 1024)) disk_free=$(($4 * 1024))
  fi
  json_string "$disk"
  printf '{"sample":{"time":%s,"cpu_percent":%s,"cpu_per_core":[%s],"cpu_count":%s,"load":[%s,%s,%s],"mem_total":%s,"mem_used":%s,"mem_available":%s,"swap_total":%s,"swap_used":%s,"disk_path":%s,"disk_total":%s,"disk_free":%s,"uptime":%s,"gpus":[]}}\n' \
    "$((btime + ${up%.*})).${up#*.}" "$total_pct" "$per_core" "$cores" "$l1" "$l5" "$l15" \
    "$((mem_total * 1024))" "$(((mem_total - mem_available) * 1024))" "$((mem_available * 1024))" \
    "$((swap_total * 1024))" "$(((swap_total - swap_free) * 1024))" "$str" \
    "$disk_total" "$disk_free" "$up" || exit 0
  nap "$interval"
done
