_taskctl_completion() {
    local IFS=$'
'
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    [ "$cur" = "=" ] && cur=
    [ "$prev" = "=" ] && prev=${COMP_WORDS[COMP_CWORD-2]}
    case $prev in
        -o|--output)
            COMPREPLY=( $(compgen -W $'table\nplain\njson\njsonl\ncsv\ntsv\nmarkdown' -- "$cur") )
            return 0 ;;
    esac
    COMPREPLY=( $( env COMP_WORDS="${COMP_WORDS[*]}" \
                   COMP_CWORD=$COMP_CWORD \
                   _TASKCTL_COMPLETE=complete_bash $1 ) )
    return 0
}

complete -o default -F _taskctl_completion taskctl
