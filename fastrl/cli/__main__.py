from fastrl.cli import main

raise SystemExit(main())
