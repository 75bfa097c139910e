import pytest

from engine.learning.rewards import FAILED_REWARD, count_test_delta, unit_reward

DIFF = """diff --git a/tests/test_x.py b/tests/test_x.py
--- a/tests/test_x.py
+++ b/tests/test_x.py
@@ -1,3 +1,9 @@
+def test_one():
+    assert 1
+    async def test_two():
+        pass
-def test_old():
 def test_kept():
+it("works", () => {})
+func TestGo(t *testing.T) {}
"""


def test_test_delta_counts_added_minus_removed() -> None:
    assert count_test_delta(DIFF) == 3  # +one +two +it +Go -old
    assert count_test_delta("+++ b/def test_fake.py\n--- a/def test_x\n") == 0


def test_rewards() -> None:
    merged = unit_reward(merged=True, review_score=8.0, diff=DIFF)
    assert merged.merged and merged.test_delta == 3
    assert merged.value == pytest.approx(1.0 + 0.4 + 0.15)
    assert unit_reward(merged=True, review_score=None, diff="").value == 1.25
    assert unit_reward(merged=False, review_score=3.0, diff=DIFF).value == FAILED_REWARD
