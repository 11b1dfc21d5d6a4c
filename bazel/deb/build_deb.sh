#!/usr/bin/env bash
# Stages relay-dev's tree and builds the .deb (called by the //:deb genrule).
#   build_deb.sh OUT.deb VERSION CONTROL PC SERVICE DEFAULT COPYRIGHT README
#                LIBSO LIBA BROKER MONITOR KEYGEN -- HEADER...
# Headers are given as paths ending in core/NAME.h or core/internal/NAME.h and
# land in /usr/include/relay/[internal/]NAME.h, as the code includes them.
set -euo pipefail
out=$1 version=$2 control=$3 pc=$4 service=$5 default=$6 copyright=$7 readme=$8
libso=$9 liba=${10} broker=${11} monitor=${12} keygen=${13}
shift 13
[[ "${1:-}" == "--" ]] && shift

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
lib=usr/lib/x86_64-linux-gnu
mkdir -p "$root/DEBIAN" "$root/usr/include/relay/internal" "$root/$lib/pkgconfig" \
  "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/default" \
  "$root/usr/share/doc/relay-dev"

for h in "$@"; do
  case "$h" in
    core/internal/*.h | */core/internal/*.h) install -m 644 "$h" "$root/usr/include/relay/internal/" ;;
    core/*.h | */core/*.h) install -m 644 "$h" "$root/usr/include/relay/" ;;
    *) echo "build_deb.sh: not a header under core/: $h" >&2; exit 1 ;;
  esac
done
install -m 644 "$libso" "$root/$lib/librelay.so.0"
ln -s librelay.so.0 "$root/$lib/librelay.so"
install -m 644 "$liba" "$root/$lib/librelay.a"
sed "s/@VERSION@/$version/" "$pc" > "$root/$lib/pkgconfig/relay.pc"
install -m 755 "$broker" "$root/usr/bin/relay-broker"
install -m 755 "$monitor" "$root/usr/bin/relay-monitor"
install -m 755 "$keygen" "$root/usr/bin/relay-keygen"
install -m 644 "$service" "$root/lib/systemd/system/relay-broker.service"
install -m 644 "$default" "$root/etc/default/relay-broker"
install -m 644 "$copyright" "$root/usr/share/doc/relay-dev/copyright"
install -m 644 "$readme" "$root/usr/share/doc/relay-dev/README.md"
strip --strip-unneeded "$root/$lib/librelay.so.0" "$root/usr/bin/"relay-* 2>/dev/null || true

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$control" > "$root/DEBIAN/control"
echo "/etc/default/relay-broker" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/triggers" <<'TRIGGERS'
activate-noawait ldconfig
TRIGGERS
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
