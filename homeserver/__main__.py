from homeserver.cli import main

raise SystemExit(main())
