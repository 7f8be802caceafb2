#!/usr/bin/env bash
# Runs the whole test suite, both legs, and prints one summary:
#
#     ./tools/test.sh                              # bazel test //tests/... (TF 2.21, .venv)
#                                                  # + tools/test_compat.sh (TF 2.16 +
#                                                  #   tensorflow-io, .venv-tf216, S3 on moto)
#     ./tools/test.sh //tests:test_model           # other target patterns (Bazel leg only)
#     ./tools/test.sh --test_filter=cost           # extra args go to bazel (Bazel leg only)
#
# The second leg runs when no arguments narrow the run (MCNN_COMPAT=0 skips
# it, MCNN_COMPAT=1 forces it). Last line: "N passed, M failed[, K skipped]"
# counted from the JUnit XML of this run, both legs summed. Exits non-zero if
# Bazel or the second leg failed, any test failed, or none ran.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"  # cd's to the repo root

if ! command -v bazel >/dev/null 2>&1; then
  echo "test.sh: installing Debian's bazel-bootstrap (Bazel 4.2.3)" >&2
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q bazel-bootstrap
fi

targets=()
flags=()
for arg in "$@"; do
  case "$arg" in
    //*|-//*) targets+=("$arg") ;;
    *) flags+=("$arg") ;;
  esac
done
if [ "${#targets[@]}" -eq 0 ]; then
  targets=("//tests/...")
fi

# Only test.xml files written by this run count (bazel-testlogs keeps old ones).
stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT

# --nocache_test_results: Bazel does not see pip changes in .venv.
bazel_status=0
# --keep_going: a test that fails to build does not stop the others.
bazel test \
  --keep_going \
  --nocache_test_results \
  --test_output=errors \
  --local_test_jobs=2 \
  "${flags[@]+"${flags[@]}"}" \
  -- "${targets[@]}" || bazel_status=$?
testlogs="$(bazel info bazel-testlogs 2>/dev/null || echo bazel-testlogs)"
bazel shutdown

# The second leg, in its own venv and process (after Bazel: 2 cores).
compat_status=0
compat_xml=""
if [ "${MCNN_COMPAT:-}" = 1 ] || { [ "${MCNN_COMPAT:-}" != 0 ] && [ "$#" -eq 0 ]; }; then
  compat_xml="$REPO_ROOT/out/test-compat.xml"
  echo "test.sh: second leg, tools/test_compat.sh (TensorFlow 2.16 + tensorflow-io)" >&2
  COMPAT_JUNIT_XML="$compat_xml" ./tools/test_compat.sh || compat_status=$?
fi

summary="$(python3 - "$testlogs" "$stamp" "$compat_xml" <<'PY'
import os, sys
import xml.etree.ElementTree as ET

testlogs, stamp, compat_xml = sys.argv[1], sys.argv[2], sys.argv[3]
since = os.path.getmtime(stamp)
passed = failed = skipped = 0
reports = [os.path.join(root, "test.xml") for root, _, files in os.walk(testlogs)
           if "test.xml" in files]
if compat_xml:  # the second leg's one report (a leg that wrote none failed)
    reports.append(compat_xml)
for path in reports:
    if not os.path.exists(path) or os.path.getmtime(path) < since:
        failed += path == compat_xml
        continue
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except ET.ParseError:
        failed += 1  # a test that died while writing its report
        continue
    cases = list(cases)
    if not cases:
        failed += 1  # a test target that ran no test at all
    for case in cases:
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
line = f"{passed} passed, {failed} failed"
print(line + (f", {skipped} skipped" if skipped else ""))
PY
)"
echo "$summary"

read -r n_passed _ n_failed _ <<<"${summary//,/}"
if [ "$bazel_status" -ne 0 ] || [ "$compat_status" -ne 0 ] || [ "$n_failed" -gt 0 ] \
    || [ "$n_passed" -eq 0 ]; then
  exit $(( bazel_status != 0 ? bazel_status : 1 ))
fi
