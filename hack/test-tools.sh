#!/usr/bin/env bash
# Builds the real test binaries (kube-apiserver, kube-controller-manager, etcd, helm, argocd-agent, OCM,
# Prometheus) from Go modules, because
# no binary downloads work where this project is developed and tested. Built binaries are cached
# outside the repository, keyed by version, so a rerun costs a version check.
#
# Usage: hack/test-tools.sh [all|envtest|helm|argocd-agent|ocm-local|prometheus|node|print-env]
#   all (default)  build what is missing, then print the environment (like print-env)
#   envtest        build kube-apiserver and etcd only
#   helm           build helm only
#   argocd-agent   build argocd-agent (principal and agent in one binary) only
#   prometheus     build prometheus and promtool; copy the Prometheus Operator's CRDs
#   node           build kube-controller-manager, kube-scheduler, kubelet, argocd-agent, Argo CD,
#                  Prometheus and the test images; install containerd, runc, CNI plugins
#   print-env      print `export VAR=...` lines: KUBEBUILDER_ASSETS, HELM, ARGOCD_AGENT_BIN, PROMTOOL...
#
# Versions are pinned here, in one place. The wrapper modules under hack/tools/ carry their go.sum.
set -euo pipefail

KUBE_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
HELM_VERSION=v3.22.0
# Also pinned by hack/tools/argocd-agent/go.mod; change both together.
ARGOCD_AGENT_VERSION=v0.9.0
# Argo CD's components for the end-to-end tests (the version argocd-agent requires); also pinned
# by hack/tools/argocd-agent/go.mod.
ARGOCD_VERSION=v3.4.3
# OCM's controllers for the end-to-end tests, from test/ocm (its own module, pinned there).
OCM_VERSION=v1.2.1
# Prometheus (its Go module v0.316.0 is Prometheus 3.16.0): promtool unit-tests the chart's alert
# rules, prometheus scrapes the manager in e2e. Also pinned by hack/tools/prometheus/go.mod.
PROMETHEUS_VERSION=v0.316.0
# The Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule), from its module's
# example/prometheus-operator-crd: e2e installs the chart's monitoring objects against them. The
# same version as the Go types test/chart checks them with (go.mod).
PROMETHEUS_OPERATOR_VERSION=v0.89.0

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ARGOCD_AGENT_ADDON_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/argocd-agent-addon/tools}
KUBE_DIR=$CACHE/kube-apiserver-$KUBE_VERSION
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION
HELM_DIR=$CACHE/helm-$HELM_VERSION
# Static (CGO_ENABLED=0), as upstream builds it: its image has no C library.
ARGOCD_AGENT_DIR=$CACHE/argocd-agent-$ARGOCD_AGENT_VERSION-static
ASSETS=$CACHE/envtest-$KUBE_VERSION-etcd-$ETCD_VERSION
PROMETHEUS_DIR=$CACHE/prometheus-$PROMETHEUS_VERSION
PROMETHEUS_OPERATOR_CRDS=$CACHE/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION

log() { echo "test-tools: $*" >&2; }

# have BIN VERSION-SUBSTRING ARGS...: the binary exists and reports the pinned version.
have() {
	local bin=$1 want=$2 out
	shift 2
	[[ -x $bin ]] || return 1
	# Capture first: `grep -q` closing the pipe early would fail the check under pipefail.
	out=$("$bin" "$@" 2>/dev/null) || return 1
	grep -q -- "$want" <<<"$out"
}

# The Kubernetes components, all from the wrapper module hack/tools/kube-apiserver:
# kube-apiserver for every test; for the nodes of test/node (pods run from the images we build,
# under the ServiceAccounts and RBAC we deliver) kube-controller-manager, kube-scheduler and
# kubelet. Stamped with the version, or they report v0.0.0-master. The missing ones are built by
# one `go build`, so that one component's link overlaps the others' compiles. Cold: 20-30 min on
# 2 cores for all four.
build_kube_components() {
	local name minor=${KUBE_VERSION#v1.} missing=() pkgs=()
	minor=${minor%%.*}
	for name in "$@"; do
		have "$KUBE_DIR/$name" "$KUBE_VERSION" --version || missing+=("$name")
	done
	[[ ${#missing[@]} -eq 0 ]] && return
	log "building ${missing[*]} $KUBE_VERSION"
	for name in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
	rm -rf "$KUBE_DIR/tmp" && mkdir -p "$KUBE_DIR/tmp"
	(cd "$ROOT/hack/tools/kube-apiserver" &&
		go build -trimpath -o "$KUBE_DIR/tmp/" \
			-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
			"${pkgs[@]}")
	for name in "${missing[@]}"; do mv "$KUBE_DIR/tmp/$name" "$KUBE_DIR/$name"; done
	rmdir "$KUBE_DIR/tmp"
}

# containerd, runc and the CNI plugins run the nodes' pods. Debian's packages are the only source
# here; CI runs as root on Debian. Only the binaries are used: each node starts its own containerd
# with its own config, root and socket, and nothing starts the system service.
ensure_node_packages() {
	local missing=()
	command -v containerd >/dev/null 2>&1 || missing+=(containerd)
	command -v runc >/dev/null 2>&1 || missing+=(runc)
	[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
	command -v iptables >/dev/null 2>&1 || missing+=(iptables)
	[[ ${#missing[@]} -eq 0 ]] && return
	log "installing ${missing[*]} (Debian packages)"
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "${missing[*]} missing: install them (e.g. apt-get install ${missing[*]})"
		return 1
	fi
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >&2
}

build_etcd() {
	if have "$ETCD_DIR/etcd" "${ETCD_VERSION#v}" --version; then return; fi
	log "building etcd $ETCD_VERSION (cold: ~2 min)"
	mkdir -p "$ETCD_DIR"
	(cd "$ROOT/hack/tools/etcd" &&
		go build -trimpath -o "$ETCD_DIR/etcd.tmp" \
			-ldflags "-s -w" go.etcd.io/etcd/server/v3)
	mv "$ETCD_DIR/etcd.tmp" "$ETCD_DIR/etcd"
}

build_helm() {
	if have "$HELM_DIR/helm" "$HELM_VERSION" version --short; then return; fi
	log "building helm $HELM_VERSION (cold: ~4 min)"
	mkdir -p "$HELM_DIR"
	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	# Without these ldflags an offline `helm template` assumes Kubernetes v1.20 and reports v0.
	GOBIN=$HELM_DIR go install -trimpath -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
		"helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

# go_build_argocd_agent VERSION OUT: argocd-agent stamped as upstream's Makefile stamps it (the
# VERSION file: no leading v), so `argocd-agent version` prints argocd-agent-VERSION. The
# principal rejects an agent whose version differs from its own, and the default is
# 99.9.9-unreleased.
go_build_argocd_agent() {
	local version=$1 out=$2
	mkdir -p "$(dirname "$out")"
	# go.sum of the wrapper module is complete; GONOSUMDB only matters if it ever is not
	# (golang.stackrox.io/grpc-http1 is replaced by its GitHub repository, unknown to sum.golang.org).
	(cd "$ROOT/hack/tools/argocd-agent" &&
		GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}github.com/stackrox/go-grpc-http1 CGO_ENABLED=0 \
			go build -trimpath -o "$out.tmp" \
			-ldflags "-s -w -X github.com/argoproj-labs/argocd-agent/internal/version.version=$version -X github.com/argoproj-labs/argocd-agent/internal/version.gitRevision=$ARGOCD_AGENT_VERSION" \
			github.com/argoproj-labs/argocd-agent/cmd/argocd-agent)
	mv "$out.tmp" "$out"
}

build_argocd_agent() {
	local version=${ARGOCD_AGENT_VERSION#v}
	if have "$ARGOCD_AGENT_DIR/argocd-agent" "^argocd-agent-$version\$" version; then return; fi
	log "building argocd-agent $ARGOCD_AGENT_VERSION (cold: 4-12 min on 2 cores)"
	go_build_argocd_agent "$version" "$ARGOCD_AGENT_DIR/argocd-agent"
}

# The same code stamped with another version: the principal "upgraded" in test/e2e's version-lock
# test, which the pinned agents must then mismatch. A relink of the build above (seconds warm).
ARGOCD_AGENT_UPGRADE_VERSION=$ARGOCD_AGENT_VERSION-upgrade
build_argocd_agent_upgrade() {
	local version=${ARGOCD_AGENT_UPGRADE_VERSION#v}
	if have "$ARGOCD_AGENT_DIR/argocd-agent-upgrade" "^argocd-agent-$version\$" version; then return; fi
	log "linking argocd-agent as $ARGOCD_AGENT_UPGRADE_VERSION"
	go_build_argocd_agent "$version" "$ARGOCD_AGENT_DIR/argocd-agent-upgrade"
}

# Argo CD's application-controller, repo-server and applicationset-controller, one static binary
# (hack/tools/argocd-agent/argocd) stamped as argo-cd's Makefile stamps its version. Built in
# argocd-agent's wrapper module, which carries argo-cd's replace set; most of it is argocd-agent's
# build already. Keyed by the version and the command's source.
argocd_dir() {
	local sum
	sum=$(cd "$ROOT/hack/tools/argocd-agent" && cat go.mod argocd/*.go | sha256sum | cut -c1-12)
	echo "$CACHE/argocd-$ARGOCD_VERSION-$sum"
}

build_argocd() {
	local dir
	dir=$(argocd_dir)
	if [[ -x $dir/argocd ]]; then return; fi
	log "building Argo CD $ARGOCD_VERSION components (cold: 5-10 min on 2 cores, after argocd-agent)"
	mkdir -p "$dir"
	(cd "$ROOT/hack/tools/argocd-agent" &&
		GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}github.com/stackrox/go-grpc-http1 CGO_ENABLED=0 \
			go build -trimpath -o "$dir/argocd.tmp" \
			-ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" ./argocd)
	mv "$dir/argocd.tmp" "$dir/argocd"
}

# Upstream's install manifests (install/kubernetes) of the same version, from its module: the
# end-to-end tests install the principal from them as a user does.
ARGOCD_AGENT_INSTALL_DIR=$ARGOCD_AGENT_DIR/install
copy_argocd_agent_install() {
	[[ -f $ARGOCD_AGENT_INSTALL_DIR/principal/kustomization.yaml ]] && return
	local dir
	dir=$(cd "$ROOT/hack/tools/argocd-agent" && go mod download -json "github.com/argoproj-labs/argocd-agent@$ARGOCD_AGENT_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $dir/install/kubernetes/principal ]] || { log "no install/kubernetes in the argocd-agent module ($dir)"; return 1; }
	rm -rf "$ARGOCD_AGENT_INSTALL_DIR.tmp" && mkdir -p "$ARGOCD_AGENT_DIR"
	cp -r "$dir/install/kubernetes" "$ARGOCD_AGENT_INSTALL_DIR.tmp"
	chmod -R u+w "$ARGOCD_AGENT_INSTALL_DIR.tmp"
	mv "$ARGOCD_AGENT_INSTALL_DIR.tmp" "$ARGOCD_AGENT_INSTALL_DIR"
}

# prometheus_release: the Prometheus release a module version is (v0.316.0 is 3.16.0).
prometheus_release() {
	local v=${PROMETHEUS_VERSION#v0.}
	echo "${v:0:1}.$((10#${v:1:2})).${v#*.}"
}

# prometheus and promtool, from one `go build` of the wrapper module, with only Kubernetes
# service discovery (upstream's build tags: the cloud providers' SDKs would double the build).
# Stamped with the release, as upstream's promu does.
build_prometheus() {
	local release
	release=$(prometheus_release)
	if have "$PROMETHEUS_DIR/prometheus" "version $release" --version && have "$PROMETHEUS_DIR/promtool" "version $release" --version; then return; fi
	log "building prometheus and promtool $release (cold: 4-6 min on 2 cores)"
	rm -rf "$PROMETHEUS_DIR/tmp" && mkdir -p "$PROMETHEUS_DIR/tmp"
	(cd "$ROOT/hack/tools/prometheus" &&
		CGO_ENABLED=0 go build -trimpath -tags remove_all_sd,enable_kubernetes_sd -o "$PROMETHEUS_DIR/tmp/" \
			-ldflags "-s -w -X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=HEAD" \
			github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
	mv "$PROMETHEUS_DIR/tmp/prometheus" "$PROMETHEUS_DIR/tmp/promtool" "$PROMETHEUS_DIR/"
	rmdir "$PROMETHEUS_DIR/tmp"
}

copy_prometheus_operator_crds() {
	[[ -f $PROMETHEUS_OPERATOR_CRDS/monitoring.coreos.com_servicemonitors.yaml ]] && return
	local dir
	dir=$(cd "$ROOT/hack/tools/prometheus" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -d $dir/example/prometheus-operator-crd ]] || { log "no example/prometheus-operator-crd in the prometheus-operator module ($dir)"; return 1; }
	rm -rf "$PROMETHEUS_OPERATOR_CRDS.tmp" && mkdir -p "$PROMETHEUS_OPERATOR_CRDS.tmp"
	cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
		"$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$PROMETHEUS_OPERATOR_CRDS.tmp/"
	chmod -R u+w "$PROMETHEUS_OPERATOR_CRDS.tmp"
	mv "$PROMETHEUS_OPERATOR_CRDS.tmp" "$PROMETHEUS_OPERATOR_CRDS"
}

# redis-server backs the Argo CD agent principal and agents in the end-to-end tests. Debian's
# package is the only source here; CI runs as root on Debian.
ensure_redis() {
	if command -v redis-server >/dev/null 2>&1; then return; fi
	log "installing redis-server (Debian package)"
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "redis-server is missing: install it (e.g. apt-get install redis-server)"
		return 1
	fi
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
}

# buildah builds the Dockerfile without a daemon (test/dockerfile). Debian's package; CI runs as
# root on Debian.
ensure_buildah() {
	if command -v buildah >/dev/null 2>&1; then return; fi
	log "installing buildah (Debian package)"
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "buildah is missing: install it (e.g. apt-get install buildah)"
		return 1
	fi
	(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah) >&2
}

# ocm-local changes with this repository's test/ocm sources: key its cache by their hash.
ocm_local_dir() {
	local sum
	sum=$(cd "$ROOT/test/ocm" && cat go.mod go.sum $(find cmd -name '*.go' | sort) | sha256sum | cut -c1-12)
	echo "$CACHE/ocm-local-$OCM_VERSION-$sum"
}

build_ocm_local() {
	local dir
	dir=$(ocm_local_dir)
	if [[ -x $dir/ocm-local ]]; then return; fi
	log "building ocm-local (OCM $OCM_VERSION hub and klusterlet controllers; cold: 7-9 min)"
	mkdir -p "$dir"
	(cd "$ROOT/test/ocm" && GONOSUMDB=${GONOSUMDB:+$GONOSUMDB,}sigs.k8s.io/about-api \
		go build -trimpath -ldflags "-s -w" -o "$dir/ocm-local.tmp" ./cmd/ocm-local)
	mv "$dir/ocm-local.tmp" "$dir/ocm-local"
}

# Images the test nodes run, built by hack/image (no Docker daemon) and imported into each node's
# containerd: the pause (sandbox) image and argocd-agent under upstream's reference, from the
# static binary above. Keyed by hack/image's sources, which define them.
images_dir() {
	local sum
	sum=$( (cd "$ROOT" && cat $(find hack/image -name '*.go' ! -name '*_test.go' | sort); argocd_dir; echo "$PROMETHEUS_VERSION") | sha256sum | cut -c1-12)
	echo "$CACHE/images-$ARGOCD_AGENT_VERSION-$sum"
}

build_test_images() {
	local dir arch
	dir=$(images_dir)
	if [[ -f $dir/pause.tar && -f $dir/argocd-agent.tar && -f $dir/argocd-agent-upgrade.tar && -f $dir/argocd.tar && -f $dir/prometheus.tar ]]; then return; fi
	log "building the test images (pause, argocd-agent $ARGOCD_AGENT_VERSION, Argo CD $ARGOCD_VERSION, Prometheus $(prometheus_release))"
	mkdir -p "$dir"
	arch=$(go env GOARCH)
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$dir/image" ./hack/image &&
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/pause" ./hack/image/pause)
	"$dir/image" build --kind pause --binary "linux/$arch=$dir/pause" --tag registry.test.local/pause:1 --archive "$dir/pause.tar.tmp"
	"$dir/image" build --kind argocd-agent --binary "linux/$arch=$ARGOCD_AGENT_DIR/argocd-agent" \
		--tag "quay.io/argoprojlabs/argocd-agent:$ARGOCD_AGENT_VERSION" --version "$ARGOCD_AGENT_VERSION" --archive "$dir/argocd-agent.tar.tmp"
	"$dir/image" build --kind argocd-agent --binary "linux/$arch=$ARGOCD_AGENT_DIR/argocd-agent-upgrade" \
		--tag "quay.io/argoprojlabs/argocd-agent:$ARGOCD_AGENT_UPGRADE_VERSION" --version "$ARGOCD_AGENT_UPGRADE_VERSION" --archive "$dir/argocd-agent-upgrade.tar.tmp"
	"$dir/image" build --kind argocd --binary "linux/$arch=$(argocd_dir)/argocd" \
		--tag "quay.io/argoproj/argocd:$ARGOCD_VERSION" --version "$ARGOCD_VERSION" --archive "$dir/argocd.tar.tmp"
	"$dir/image" build --kind prometheus --binary "linux/$arch=$PROMETHEUS_DIR/prometheus" \
		--tag "quay.io/prometheus/prometheus:v$(prometheus_release)" --version "v$(prometheus_release)" --archive "$dir/prometheus.tar.tmp"
	mv "$dir/prometheus.tar.tmp" "$dir/prometheus.tar"
	mv "$dir/argocd.tar.tmp" "$dir/argocd.tar"
	mv "$dir/pause.tar.tmp" "$dir/pause.tar"
	mv "$dir/argocd-agent-upgrade.tar.tmp" "$dir/argocd-agent-upgrade.tar"
	mv "$dir/argocd-agent.tar.tmp" "$dir/argocd-agent.tar"
}

link_assets() {
	mkdir -p "$ASSETS"
	ln -sf "$KUBE_DIR/kube-apiserver" "$ASSETS/kube-apiserver"
	ln -sf "$ETCD_DIR/etcd" "$ASSETS/etcd"
}

print_env() {
	echo "export KUBEBUILDER_ASSETS=$ASSETS"
	echo "export HELM=$HELM_DIR/helm"
	echo "export ARGOCD_AGENT_BIN=$ARGOCD_AGENT_DIR/argocd-agent"
	echo "export ARGOCD_AGENT_INSTALL_DIR=$ARGOCD_AGENT_INSTALL_DIR"
	echo "export OCM_LOCAL_BIN=$(ocm_local_dir)/ocm-local"
	echo "export KUBE_CONTROLLER_MANAGER_BIN=$KUBE_DIR/kube-controller-manager"
	echo "export KUBE_SCHEDULER_BIN=$KUBE_DIR/kube-scheduler"
	echo "export KUBELET_BIN=$KUBE_DIR/kubelet"
	echo "export PAUSE_IMAGE_ARCHIVE=$(images_dir)/pause.tar"
	echo "export ARGOCD_AGENT_IMAGE_ARCHIVE=$(images_dir)/argocd-agent.tar"
	echo "export ARGOCD_AGENT_UPGRADE_IMAGE_ARCHIVE=$(images_dir)/argocd-agent-upgrade.tar"
	echo "export ARGOCD_IMAGE_ARCHIVE=$(images_dir)/argocd.tar"
	echo "export PROMTOOL=$PROMETHEUS_DIR/promtool"
	echo "export PROMETHEUS_IMAGE_ARCHIVE=$(images_dir)/prometheus.tar"
	echo "export PROMETHEUS_IMAGE=quay.io/prometheus/prometheus:v$(prometheus_release)"
	echo "export PROMETHEUS_OPERATOR_CRDS=$PROMETHEUS_OPERATOR_CRDS"
}

# in_parallel FN...: runs each function in the background and fails if any failed. The builds
# are CPU-bound, but each has serial stretches (module downloads, the linker, apt) that the other
# fills: two at a time on 2 cores took minutes off a cold run.
kill_tree() {
	local p
	for p in "$@"; do
		kill_tree $(pgrep -P "$p" 2>/dev/null || true)
		kill "$p" 2>/dev/null || true
	done
}

in_parallel() {
	local pids=() fn failed=0
	# An interrupted or failed run stops the other builds too: go ignores the SIGINT that bash
	# leaves ignored in background jobs of a script.
	trap 'kill_tree "${pids[@]}"' EXIT INT TERM
	for fn in "$@"; do
		$fn &
		pids+=($!)
	done
	for _ in "${pids[@]}"; do
		if ! wait -n; then
			failed=1
			kill_tree "${pids[@]}"
		fi
	done
	trap - EXIT INT TERM
	return $failed
}

kube_all() { build_kube_components kube-apiserver kube-controller-manager kube-scheduler kubelet; }
rest_all() {
	build_etcd
	build_helm
	ensure_node_packages
	ensure_redis
	ensure_buildah
	build_argocd_agent
	build_argocd_agent_upgrade
	build_argocd
	copy_argocd_agent_install
	build_prometheus
	copy_prometheus_operator_crds
	build_test_images
	build_ocm_local
}

case ${1:-all} in
all)
	in_parallel kube_all rest_all
	link_assets
	print_env
	;;
envtest)
	build_etcd
	build_kube_components kube-apiserver
	link_assets
	;;
helm) build_helm ;;
argocd-agent)
	build_argocd_agent
	copy_argocd_agent_install
	;;
ocm-local) build_ocm_local ;;
node)
	build_kube_components kube-controller-manager kube-scheduler kubelet
	ensure_node_packages
	build_argocd_agent
	build_argocd_agent_upgrade
	build_argocd
	copy_argocd_agent_install
	build_prometheus
	copy_prometheus_operator_crds
	build_test_images
	;;
prometheus)
	build_prometheus
	copy_prometheus_operator_crds
	;;
print-env) print_env ;;
*)
	echo "usage: $0 [all|envtest|helm|argocd-agent|ocm-local|prometheus|node|print-env]" >&2
	exit 2
	;;
esac
