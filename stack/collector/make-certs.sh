#!/usr/bin/env bash
# Makes the lab 6 credentials: a private CA, one server certificate for the gateways
# (signed by that CA) and the bearer token the agent presents. Nothing here is ever
# committed (.gitignore lists the directory); run it again to start over.
#
#   make-certs.sh [DIR]    default DIR: stack/collector/certs
#
# DIR/ca.crt        the lab CA: the agent (and any client) trusts the gateways through it
# DIR/ca.key        the CA's key (only needed to sign again)
# DIR/gateway.crt   the gateways' certificate; names: gateway1, gateway2, localhost,
# DIR/gateway.key   127.0.0.1 and the Kubernetes names of stack/k8s/
# DIR/token         a random bearer token, one line
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here/certs}"
mkdir -p "$dir"
cd "$dir"

# Every name a client may dial a gateway by: compose service names, loopback for the
# native stack, and the pods and Service of stack/k8s/ (namespace otel-lab).
sans="DNS:gateway1,DNS:gateway2,DNS:localhost,IP:127.0.0.1"
sans+=",DNS:lab-gateway.otel-lab.svc.cluster.local,DNS:*.lab-gateway.otel-lab.svc.cluster.local"
sans+=",DNS:*.lab-gateway.otel-lab.svc,DNS:*.lab-gateway.otel-lab"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca.key -out ca.crt -days 30 -subj "/CN=otel-lab demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout gateway.key -out gateway.csr -subj "/CN=otel-lab gateway" 2>/dev/null
openssl x509 -req -in gateway.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out gateway.crt -days 30 \
  -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$sans") \
  2>/dev/null
rm -f gateway.csr ca.srl
# The collector image runs as a non-root user: the key must be readable by it.
chmod 644 gateway.key
# 32 random bytes, hex: no character that needs escaping in a header or a URL.
openssl rand -hex 32 >token
echo "make-certs.sh: CA, gateway certificate and token in $dir (valid 30 days)" >&2
