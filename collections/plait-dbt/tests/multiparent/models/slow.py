import os
import time


def model(dbt, session):
    # Sleeps PLAIT_DBT_TEST_SLOW_SECONDS (default 0): time to look at the store mid-run.
    time.sleep(float(os.environ.get("PLAIT_DBT_TEST_SLOW_SECONDS") or 0))
    return dbt.ref("a")
