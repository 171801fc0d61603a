# What tests/integration/conftest.LabHosts.fingerprint reads on a lab host, run in one exec
# as root: "@@ section" lines, each followed by its lines. Read-only; always exits 0 (a thing
# that cannot be read is recorded as its error message, so its absence is compared too).
APP=/opt/analyticbot/app
DIRS="/srv/analyticbot /etc/analyticbot /opt/analyticbot /var/cache/analyticbot
/var/lib/rollback-ops /var/backups/rollback-ops /etc/rollback-ops /usr/local/lib/rollback-ops
/etc/systemd/system"

echo "@@ files"
# git's own files (git status rewrites the index), Python's caches and SQLite's file with its
# -wal/-shm (a checkpoint rewrites them; its dump is compared below) are left out
for d in $DIRS; do
    [ -e "$d" ] || { echo "$d absent"; continue; }
    find "$d" \( -path "$APP/.git" -o -name __pycache__ -o -name 'analytics.db-*' \) -prune \
        -o -printf '%p %y %m %u:%g %l\n'
done | sort
# shellcheck disable=SC2086 # DIRS is a list of paths without spaces
find $DIRS \( -path "$APP/.git" -o -name __pycache__ -o -name 'analytics.db*' \) -prune \
    -o -type f -exec sha256sum {} + 2>/dev/null | sort

echo "@@ git"
git -C "$APP" symbolic-ref -q HEAD || echo "HEAD detached"
git -C "$APP" rev-parse HEAD 2>&1
git -C "$APP" for-each-ref --format='%(refname) %(objectname)' 2>&1
git -C "$APP" status --porcelain=v1 --ignored --untracked-files=all 2>&1
git -C "$APP" stash list 2>&1

echo "@@ units"
pg="postgresql@$(ls /usr/lib/postgresql | sort -n | tail -n 1)-main.service"
for unit in analyticbot-api.service "$pg"; do
    systemctl show -p ActiveState,SubState,MainPID,ExecMainStartTimestampMonotonic,NRestarts \
        "$unit" | sed "s/^/$unit /"
done
systemctl list-units --all --plain --no-legend 'rollback-ops*' 2>&1

echo "@@ docker"
# the worker's names are per host (the hosts share the outer engine): from worker/.env
COMPOSE_PROJECT_NAME=none LAB_TAG=none
# shellcheck disable=SC1091
[ -f "$APP/worker/.env" ] && . "$APP/worker/.env"
api() { curl -s --unix-socket /var/run/docker.sock "http://localhost$1"; echo; }
api "/containers/$COMPOSE_PROJECT_NAME/json"
api "/images/analyticbot-worker:$LAB_TAG/json"

echo "@@ postgresql"
psql() { runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 "$@" 2>&1; }
psql -c "SELECT datname FROM pg_database ORDER BY 1"
# pg_dump's \restrict lines carry a random key (new in each dump)
schema=$(runuser -u postgres -- pg_dump -s analyticbot 2>&1 | grep -Ev '^\\(un)?restrict ' | sha256sum)
echo "schema $schema"
psql -d analyticbot <<'SQL'
SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1;
SELECT format(
    'SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %s t',
    c.oid::regclass, c.oid::regclass)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1 \gexec
SQL

echo "@@ sqlite"
echo "analytics.db $(sqlite3 -readonly /srv/analyticbot/analytics.db .dump 2>&1 | sha256sum)"
true
