from f2b_study.cli import main

raise SystemExit(main())
