#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# docs/render-man.sh - render docs/vfs_ceph_rs.8.xml to docs/vfs_ceph_rs.8 with Samba's own
# man page pipeline (docs-xml/xslt/expand-sambadoc.xsl, then man.xsl over docbook-xsl).
#
#   bash docs/render-man.sh [SAMBA_SOURCE]
#
# SAMBA_SOURCE: a Samba source tree or its tarball (default: the orig tarball cached by
# samba-headers/prepare.sh under /var/cache/ceph_rs/samba-sdk). Needs xsltproc, docbook-xsl
# and docbook-xml (apt-get install xsltproc docbook-xsl docbook-xml).
set -euo pipefail
DOCS=$(cd "$(dirname "$0")" && pwd)
SRC=${1:-$(ls -1 /var/cache/ceph_rs/samba-sdk/*/work/samba_*.orig.tar.* 2>/dev/null | tail -1)}
[ -n "$SRC" ] && [ -e "$SRC" ] || { echo "render-man: no Samba source (pass a tree or tarball)" >&2; exit 2; }
for c in xsltproc; do command -v $c >/dev/null || { echo "render-man: $c missing" >&2; exit 2; }; done
[ -d /usr/share/xml/docbook/stylesheet/docbook-xsl ] || { echo "render-man: docbook-xsl missing" >&2; exit 2; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
if [ -d "$SRC" ]; then
  cp -r "$SRC/docs-xml" "$T/docs-xml"
else
  tar -xf "$SRC" -C "$T" --wildcards '*/docs-xml/xslt/*' '*/docs-xml/build/*'
  mv "$T"/samba-*/docs-xml "$T/docs-xml"
fi
X=$T/docs-xml
# The version entity, as Samba's build would set it: the installed smbd's version.
VERSION=$(smbd -V 2>/dev/null | sed -e "s/^Version //" -e "s/-.*//" || true)
echo "<!ENTITY doc.version '${VERSION:-4.22}'>" > "$X/build/DTD/samba.build.version"
: > "$X/build/DTD/samba.build.pathconfig"
sed -e "s|@abs_top_srcdir@|$X|g" -e "s|@abs_top_builddir@|$X|g" \
    "$X/build/catalog.xml.in" > "$X/build/catalog.xml"
export XML_CATALOG_FILES="$X/build/catalog.xml /etc/xml/catalog"
xsltproc --nonet --xinclude --stringparam noreference 0 -o "$T/expanded.xml" \
    "$X/xslt/expand-sambadoc.xsl" "$DOCS/vfs_ceph_rs.8.xml"
xsltproc --nonet -o "$T/out/" "$X/xslt/man.xsl" "$T/expanded.xml"
cp "$T/out/vfs_ceph_rs.8" "$DOCS/vfs_ceph_rs.8"
echo "render-man: wrote $DOCS/vfs_ceph_rs.8 (Samba $VERSION stylesheets)"
