from recguard.cli import main

main()
