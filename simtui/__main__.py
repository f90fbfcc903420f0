from simtui.cli import main

main()
