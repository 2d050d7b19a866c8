from ganexp.cli.entry import main

main()
