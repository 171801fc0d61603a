from rollback_ops.cli import main

raise SystemExit(main())
