#!/bin/sh
# Build the AnalyticBot git work tree /opt/analyticbot/app in the lab image (run once, by
# the Dockerfile, with a copy of rollback_ops/lab/files as $1).
#
# History on branch main (fixed authors and dates, so the commits are the same every build):
#   "Release 1.4.0", tag release-1.4.0: the good release, checked out (deployed);
#   "Release 1.5.0", tag release-1.5.0: the bad one, fetched but not deployed
#                    (`lab-release deploy-bad` deploys it, `lab-release reset` undoes that).
# 1.4.0 is releases/1.4.0 (migrations 001-003, applied by `lab-db build`) plus
# analyticbot_app.py. 1.5.0 overlays releases/1.5.0 (a new worker/orchestrator.sh, two added
# worker files, migrations/004_add_scores.sql and its 004_rollback.sql) and sets VERSION and
# BROKEN in the app.
set -eu
FILES=$1
APP=/opt/analyticbot/app
export GIT_AUTHOR_NAME=lab GIT_AUTHOR_EMAIL=lab@rollback-ops.invalid
export GIT_COMMITTER_NAME=lab GIT_COMMITTER_EMAIL=lab@rollback-ops.invalid

release() {  # release VERSION DATE: commit the work tree as it is and tag it
    export GIT_AUTHOR_DATE="$2" GIT_COMMITTER_DATE="$2"
    git add -A
    git commit -q -m "Release $1"
    git tag -a -m "Release $1" "release-$1"
}

mkdir -p "$APP"
cd "$APP"
git init -q -b main
cp -R "$FILES/releases/1.4.0/." .
cp "$FILES/analyticbot_app.py" analyticbot_app.py
chmod 0755 analyticbot_app.py worker/orchestrator.sh
printf '%s\n' '*.backup.*' worker/busybox worker/.env FAIL_BUILD > .gitignore
release 1.4.0 2026-01-20T10:00:00Z

cp -R "$FILES/releases/1.5.0/." .
sed -i -e 's/^VERSION = "1.4.0"$/VERSION = "1.5.0"/' -e 's/^BROKEN = False\b/BROKEN = True/' \
    analyticbot_app.py
grep -q '^VERSION = "1.5.0"$' analyticbot_app.py && grep -q '^BROKEN = True' analyticbot_app.py
release 1.5.0 2026-01-21T10:00:00Z

git reset -q --hard release-1.4.0
cp /bin/busybox worker/busybox
test -z "$(git status --porcelain)"
