from tiller.cli import main

raise SystemExit(main())
