#!/bin/sh
# Checks that server/ keeps its layers (docs/design.md, "Layers"): every
# folder has a README saying what lives there, and every #include "..."
# names a header of the folder's own layer or of a layer it may use.
# Nothing reaches up through "../". Usage: check_layers.sh SERVER_DIR
set -u
dir=$1
status=0

# folder: the prefixes its files may include ("pb" = generated messages;
# cairn_revision.h, generated at build time, is one #define for --version)
allowed() {
    case $1 in
    base) echo "base/" ;;
    config) echo "base/ config/ cairn_revision.h" ;;
    metrics) echo "base/ metrics/" ;;
    transport) echo "base/ transport/" ;;
    store) echo "base/ store/ pb" ;;
    core) echo "base/ metrics/ store/store.h core/ pb" ;;
    service) echo "base/ config/ metrics/ transport/ core/ store/store.h service/ pb" ;;
    esac
}

for layer in base config metrics transport store core service; do
    if [ ! -f "$dir/$layer/README.md" ]; then
        echo "server/$layer: no README.md saying what lives there"
        status=1
    fi
    for f in $(find "$dir/$layer" -name '*.[ch]'); do
        for inc in $(grep -o '#include "[^"]*"' "$f" | sed 's/#include "//; s/"$//'); do
            ok=0
            for p in $(allowed "$layer"); do
                case $p in
                pb) case $inc in cairn/v1/*.pb-c.h | grpc/health/v1/*.pb-c.h) ok=1 ;; esac ;;
                */) case $inc in "$p"*) ok=1 ;; esac ;;
                *) [ "$inc" = "$p" ] && ok=1 ;;
                esac
            done
            if [ $ok = 0 ]; then
                echo "${f#"$dir"/}: includes \"$inc\", which server/$layer may not"
                status=1
            fi
        done
    done
done
[ $status = 0 ] && echo "layers: every include points down"
exit $status
