"""The numerical core imports no Django module (it must stay testable with plain arrays)."""

import subprocess
import sys


def test_import_recommendations_ml_loads_no_django():
    code = (
        "import sys, recommendations.ml, recommendations.ml.ids, recommendations.ml.matrices, "
        "recommendations.ml.train, recommendations.ml.scoring, recommendations.ml.evaluate, "
        "recommendations.ml.pipeline; "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
