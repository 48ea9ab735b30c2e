"""Prints deploy/k8s/prometheus-rules.yaml: the rules file as a ConfigMap.

    python3 deploy/prometheus/configmap.py > deploy/k8s/prometheus-rules.yaml

Standard library only. The deploy test checks the ConfigMap's data equals
deploy/prometheus/mpp-rules.yaml byte for byte.
"""

import pathlib
import sys

HEADER = """\
# The Prometheus rules of deploy/prometheus/mpp-rules.yaml as a ConfigMap,
# for a Prometheus that loads rule files from mounted ConfigMaps (mount it
# and add /etc/prometheus/rules/mpp-rules.yaml to rule_files). The data is
# the file verbatim: the deploy test (tests/tests/e2e/deploy.rs) keeps the
# two identical, so edit the file and regenerate this one:
#   python3 deploy/prometheus/configmap.py > deploy/k8s/prometheus-rules.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: mpp-prometheus-rules
  labels:
    app.kubernetes.io/part-of: mpp-hub
    app.kubernetes.io/component: monitoring
data:
  mpp-rules.yaml: |
"""


def main() -> None:
    rules = (pathlib.Path(__file__).parent / "mpp-rules.yaml").read_text(encoding="utf-8")
    body = "".join("    " + line if line.strip() else "\n" for line in rules.splitlines(True))
    sys.stdout.write(HEADER + body)


if __name__ == "__main__":
    main()
