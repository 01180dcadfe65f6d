from ctr.cli import main

main()
